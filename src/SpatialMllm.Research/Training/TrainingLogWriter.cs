using System.Globalization;
using SpatialMllm.Research.Runs;
using TorchSharp;

namespace SpatialMllm.Research.Training;

/// <summary>
/// Each step's scalars in <c>log.csv</c> and as TensorBoard scalars (<c>runs/</c>, TorchSharp's SummaryWriter). One row
/// per step: a resumed run drops the rows after its checkpoint (those steps are trained again) before appending. A step
/// with no trained example has empty loss and grad_norm and is not sent to TensorBoard: it updated nothing.
/// </summary>
internal sealed class TrainingLogWriter : IDisposable
{
    /// <summary>SFT's columns after <c>step</c>.</summary>
    static readonly string[] SftColumns = ["epoch", "loss", "learning_rate", "mm_projector_lr", "grad_norm", "tokens_per_second", "seconds", "skipped_rows"];

    readonly StreamWriter _csv;
    readonly TorchSharp.Modules.SummaryWriter _board;
    readonly string[] _columns;

    /// <param name="resumedStep">The checkpoint's step when resuming (rows up to it are kept); 0: a new log.</param>
    /// <param name="columns">The columns after <c>step</c>; null: SFT's.</param>
    public TrainingLogWriter(string outputDir, int resumedStep, IReadOnlyList<string>? columns = null)
    {
        _columns = [.. columns ?? SftColumns];
        string header = string.Join(',', _columns.Prepend("step"));
        string path = Path.Combine(outputDir, SftTrainer.LogFile);
        var kept = resumedStep > 0 && File.Exists(path)
            ? File.ReadLines(path).Skip(1).Where(row => StepOf(row) is int step && step <= resumedStep).ToList()
            : [];
        AtomicFile.WriteAllText(path, string.Concat(kept.Prepend(header).Select(row => row + "\n")));
        _csv = new StreamWriter(path, append: true) { AutoFlush = true };
        _board = torch.utils.tensorboard.SummaryWriter(Path.Combine(outputDir, "runs"));
    }

    static int? StepOf(string row) =>
        int.TryParse(row.AsSpan(0, Math.Max(0, row.IndexOf(','))), NumberStyles.None, CultureInfo.InvariantCulture, out int step) ? step : null;

    static string R(double? x) => x is double v ? v.ToString("R", CultureInfo.InvariantCulture) : "";

    public void Write(TrainingStepLog s)
    {
        _csv.WriteLine(string.Join(',', s.Step.ToString(CultureInfo.InvariantCulture), R(s.Epoch), R(s.Loss), R(s.LearningRate),
            R(s.ProjectorLearningRate), R(s.GradNorm), R(s.TokensPerSecond), R(s.Seconds), s.SkippedRows.ToString(CultureInfo.InvariantCulture)));
        if (s.Loss is not double loss) return;
        _board.add_scalar("train/loss", (float)loss, s.Step);
        _board.add_scalar("train/learning_rate", (float)s.LearningRate, s.Step);
        _board.add_scalar("train/grad_norm", (float)(s.GradNorm ?? 0), s.Step);
        _board.add_scalar("train/tokens_per_second", (float)s.TokensPerSecond, s.Step);
    }

    /// <summary>One row of the columns given at construction (an empty cell for null or a missing name); every value
    /// that is set also goes to TensorBoard as <c>train/NAME</c>.</summary>
    public void Write(int step, IReadOnlyDictionary<string, double?> values)
    {
        _csv.WriteLine(string.Join(',', _columns.Select(c => R(values.GetValueOrDefault(c))).Prepend(step.ToString(CultureInfo.InvariantCulture))));
        foreach (string c in _columns)
            if (values.GetValueOrDefault(c) is double v && double.IsFinite(v)) _board.add_scalar("train/" + c, (float)v, step);
    }

    public void Dispose() => _csv.Dispose();
}
