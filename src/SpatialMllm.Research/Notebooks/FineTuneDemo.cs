using SpatialMllm.Research.Models;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Notebooks;

/// <summary>
/// A small in-memory fine-tuning loop for notebooks (notebook 07), the same pieces as <see cref="SftTrainer"/>: the SFT
/// loss, global clip, AdamW with the seed's two groups, the cosine schedule with warm-up; and multiple-choice accuracy
/// by likelihood (the choice whose answer tokens have the lowest loss).
/// </summary>
public static class FineTuneDemo
{
    /// <summary>Builds the training examples once (frames → patches, text → ids and labels) with VGGT's output computed
    /// once per video (frozen, so every epoch would compute the same).</summary>
    public static List<SftExample> Examples(SpatialMllmModel model, SftExampleBuilder builder, IEnumerable<VideoQuestion> questions, double fps = 2.0) =>
        questions.Select((q, i) =>
        {
            var example = builder.Build(q.Frames, fps, q.ToRow($"example {i}"));
            return model.HasSpatialEncoder ? example with { SpatialTokens = model.SpatialTokens(example.VideoTchw).DetachFromDisposeScope() } : example;
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
        var schedule = CosineSchedule.FromRatio(steps, 0.03);
        var order = Enumerable.Range(0, examples.Count).ToArray();
        var random = new Random(seed);
        var losses = new List<double>();
        int seen = 0;
        for (int step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            foreach (var p in trainable) p.Parameter.grad = null;
            double sum = 0;
            for (int i = 0; i < examplesPerStep; i++, seen++)
            {
                if (seen % examples.Count == 0) random.Shuffle(order);
                var loss = SftObjective.Loss(model, examples[order[seen % examples.Count]]);
                (loss / examplesPerStep).backward();
                sum += loss.item<float>();
            }
            GradientClipping.ClipGlobalNorm(trainable.Select(p => p.Parameter.grad).OfType<Tensor>(), 1.0);
            double factor = schedule.Factor(step);
            optimizer.Update(g => (g == ParameterGroup.Language ? learningRate : projectorLearningRate) * factor);
            losses.Add(sum / examplesPerStep);
            onStep?.Invoke(step + 1, losses[^1]);
        }
        foreach (var p in trainable) p.Parameter.grad = null;
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
