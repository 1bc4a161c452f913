using SpatialMllm.Research.Models;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Notebooks;

/// <summary>
/// A small in-memory fine-tuning loop for notebooks (notebook 07): the steps of <see cref="SftTrainer"/> (one
/// <see cref="OptimizerStep"/>: SFT loss, global clip, AdamW with the seed's two groups, the cosine schedule with
/// warm-up) over examples held in memory instead of annotation files, without checkpoints; and multiple-choice accuracy
/// by likelihood (the choice whose answer tokens have the lowest loss).
/// </summary>
public static class FineTuneDemo
{
    /// <summary>Builds the training examples once (frames → patches, text → ids and labels) with VGGT's output computed
    /// once per video (while VGGT is frozen every epoch would compute the same; training VGGT, or any change of its
    /// weights, makes the loss recompute it instead).</summary>
    public static List<SftExample> Examples(SpatialMllmModel model, SftExampleBuilder builder, IEnumerable<VideoQuestion> questions, double fps = 2.0) =>
        questions.Select((q, i) =>
        {
            var example = builder.Build(q.Frames, fps, q.ToRow($"example {i}"));
            return model.HasSpatialEncoder
                ? example with { SpatialTokens = model.SpatialTokens(example.VideoTchw).DetachFromDisposeScope(), SpatialTokensWeights = model.SpatialEncoderWeights() }
                : example;
        }).ToList();

    /// <summary>
    /// <paramref name="steps"/> optimizer steps of <paramref name="examplesPerStep"/> examples each (gradient accumulation,
    /// cycling through the shuffled examples); returns the mean loss of every step. <paramref name="onStep"/> sees
    /// (step, loss) as it goes.
    /// </summary>
    public static List<double> Train(SpatialMllmModel model, IReadOnlyList<SftExample> examples, TrainableSet trainableSet, int steps,
        double learningRate, double projectorLearningRate, int examplesPerStep = 1, int seed = 0, Action<int, double>? onStep = null) =>
        Train(model, examples, trainableSet.Apply(model), steps, learningRate, projectorLearningRate, examplesPerStep, seed, onStep);

    /// <summary>The same loop over given parameters, e.g. LoRA adapters' (<see cref="LoraTraining.TrainableParameters"/>).</summary>
    public static List<double> Train(SpatialMllmModel model, IReadOnlyList<SftExample> examples, IReadOnlyList<TrainableParameter> trainable, int steps,
        double learningRate, double projectorLearningRate, int examplesPerStep = 1, int seed = 0, Action<int, double>? onStep = null)
    {
        using var optimizer = new AdamW(trainable);
        var step = new OptimizerStep(trainable, optimizer, maxGradNorm: 1.0);
        var schedule = CosineSchedule.FromRatio(steps, 0.03);
        var order = Enumerable.Range(0, examples.Count).ToArray();
        var random = new Random(seed);
        var losses = new List<double>();
        int seen = 0;
        for (int i = 0; i < steps; i++)
        {
            step.Begin();
            double sum = 0;
            for (int e = 0; e < examplesPerStep; e++, seen++)
            {
                if (seen % examples.Count == 0) random.Shuffle(order);
                sum += step.Accumulate(model, examples[order[seen % examples.Count]], examplesPerStep);
            }
            double factor = schedule.Factor(i);
            step.Update(g => (g == ParameterGroup.Language ? learningRate : projectorLearningRate) * factor);
            losses.Add(sum / examplesPerStep);
            onStep?.Invoke(i + 1, losses[^1]);
        }
        step.Begin(); // no gradients left holding memory after the demo
        return losses;
    }

    /// <summary>The fraction of questions whose most likely choice (lowest answer loss) is the right one.</summary>
    public static double Accuracy(SpatialMllmModel model, SftExampleBuilder builder, IReadOnlyList<VideoQuestion> questions, double fps = 2.0)
    {
        using var noGrad = torch.no_grad();
        int right = 0;
        foreach (var q in questions)
        {
            using var scope = torch.NewDisposeScope();
            Tensor? spatial = null; // one VGGT pass per video, shared by its choices
            var losses = q.Choices.Select(choice =>
            {
                var example = builder.Build(q.Frames, fps, q.ToRow("choice", choice));
                if (model.HasSpatialEncoder) example = example with { SpatialTokens = spatial ??= model.SpatialTokens(example.VideoTchw) };
                return SftObjective.Loss(model, example).item<float>();
            }).ToList();
            if (q.Choices[losses.IndexOf(losses.Min())] == q.Answer) right++;
        }
        return (double)right / questions.Count;
    }
}
