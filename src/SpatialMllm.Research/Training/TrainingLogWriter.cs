using System.Globalization;
using TorchSharp;

namespace SpatialMllm.Research.Training;

/// <summary>Each step's scalars in <c>log.csv</c> and as TensorBoard scalars (<c>runs/</c>, TorchSharp's SummaryWriter).</summary>
internal sealed class TrainingLogWriter : IDisposable
{
    readonly StreamWriter _csv;
    readonly TorchSharp.Modules.SummaryWriter _board;

    public TrainingLogWriter(string outputDir, bool append)
    {
        string path = Path.Combine(outputDir, SftTrainer.LogFile);
        bool header = !append || !File.Exists(path);
        _csv = new StreamWriter(path, append) { AutoFlush = true };
        if (header) _csv.WriteLine("step,epoch,loss,learning_rate,mm_projector_lr,grad_norm,tokens_per_second,seconds,skipped_rows");
        _board = torch.utils.tensorboard.SummaryWriter(Path.Combine(outputDir, "runs"));
    }

    public void Write(TrainingStepLog s)
    {
        _csv.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{s.Step},{s.Epoch:R},{s.Loss:R},{s.LearningRate:R},{s.ProjectorLearningRate:R},{s.GradNorm:R},{s.TokensPerSecond:R},{s.Seconds:R},{s.SkippedRows}"));
        _board.add_scalar("train/loss", (float)s.Loss, s.Step);
        _board.add_scalar("train/learning_rate", (float)s.LearningRate, s.Step);
        _board.add_scalar("train/grad_norm", (float)s.GradNorm, s.Step);
        _board.add_scalar("train/tokens_per_second", (float)s.TokensPerSecond, s.Step);
    }

    public void Dispose() => _csv.Dispose();
}
