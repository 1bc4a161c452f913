using System.Diagnostics;
using System.Globalization;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Scenes;
using TorchSharp;

namespace SpatialMllm.Research.Training;

/// <summary>How <see cref="VggtGeometryTrainer"/> teaches VGGT geometry on synthetic scenes.</summary>
/// <param name="SceneSeeds">The scenes drawn from, one per step in turn.</param>
/// <param name="Scene">Their size and length (frames must be multiples of the patch size, or are cropped to them).</param>
/// <param name="FramesPerSequence">Frames of one scene per step (VGGT's S; the first is the reference camera).</param>
public sealed record VggtGeometryOptions(IReadOnlyList<int> SceneSeeds, SyntheticSceneOptions Scene, int FramesPerSequence = 4, int Steps = 100)
{
    /// <summary>Sequences (scenes, in turn) per step, in one batched forward (VGGT's B).</summary>
    public int SequencesPerStep { get; init; } = 1;
    public double LearningRate { get; init; } = 1e-3;
    public double WeightDecay { get; init; } = 0.05;
    public double MaxGradNorm { get; init; } = 1.0;
    public double WarmupRatio { get; init; } = 0.05;
    /// <summary>Seeds the frames chosen from each scene.</summary>
    public int Seed { get; init; }
    public VggtLossOptions Loss { get; init; } = new();

    internal void Validate()
    {
        if (SceneSeeds.Count == 0) throw new ArgumentException("Give at least one scene seed.", nameof(SceneSeeds));
        if (FramesPerSequence < 1 || FramesPerSequence > Scene.Frames)
            throw new ArgumentOutOfRangeException(nameof(FramesPerSequence), $"frames per sequence must be 1 to the scene's {Scene.Frames}, not {FramesPerSequence}");
        if (Steps < 1) throw new ArgumentOutOfRangeException(nameof(Steps), $"steps must be at least 1, not {Steps}");
        if (SequencesPerStep < 1) throw new ArgumentOutOfRangeException(nameof(SequencesPerStep), $"sequences per step must be at least 1, not {SequencesPerStep}");
        if (!(LearningRate > 0)) throw new ArgumentOutOfRangeException(nameof(LearningRate), $"learning rate must be positive, not {LearningRate}");
    }
}

/// <summary>One logged step of <see cref="VggtGeometryTrainer"/>: VGGT's loss terms by their names (loss_camera, …,
/// objective) and the global gradient norm before clipping; <paramref name="SceneSeed"/> and <paramref name="Frames"/> are
/// the step's first sequence's.</summary>
public sealed record VggtGeometryStep(int Step, int SceneSeed, IReadOnlyList<int> Frames, IReadOnlyDictionary<string, double> Losses,
    double GradNorm, double LearningRate, double Seconds);

/// <summary>
/// Stage 1 of a Spatial-MLLM made from scratch: VGGT alone (aggregator and heads) taught geometry from a renderer's ground
/// truth with VGGT's own losses (<see cref="VggtLoss"/>: camera, depth and points with confidence), as VGGT is trained —
/// one sequence of <see cref="VggtGeometryOptions.FramesPerSequence"/> frames of a <see cref="SyntheticScene"/> per step,
/// AdamW (LayerNorm weights and biases not decayed) on a cosine schedule with warm-up, global gradient norm clipped.
/// Every other parameter of the model is frozen. Runs on the model's device (the scenes are rendered on the CPU).
/// Deterministic on CPU for a given model and options.
/// </summary>
public static class VggtGeometryTrainer
{
    /// <summary>log.csv's columns after <c>step</c>.</summary>
    public static readonly IReadOnlyList<string> LogColumns =
        ["scene_seed", "loss_camera", "loss_T", "loss_R", "loss_FL", "loss_conf_depth", "loss_reg_depth", "loss_grad_depth",
         "loss_conf_point", "loss_reg_point", "loss_grad_point", "objective", "grad_norm", "learning_rate", "seconds"];

    /// <summary>Trains <paramref name="model"/>'s VGGT in place; writes <c>log.csv</c> (and TensorBoard scalars) into
    /// <paramref name="logFolder"/> when given; returns every step. <paramref name="stopAfter"/> ends the run early (the
    /// schedule stays that of all the steps), as a check of a run's first steps does.</summary>
    public static IReadOnlyList<VggtGeometryStep> Train(SpatialMllmModel model, VggtGeometryOptions options, string? logFolder = null,
        Action<string>? log = null, int? stopAfter = null)
    {
        options.Validate();
        var vggt = model.spatial_encoder?.vggt_model
            ?? throw new ArgumentException("The model has no spatial encoder (VGGT) to train: it is a plain Qwen2.5-VL.", nameof(model));
        log ??= Console.WriteLine;
        var trainable = new TrainableSet(TuneLanguage: false, TuneConnector: false, TuneSpatialEncoder: true).Apply(model);
        using var optimizer = new AdamW(trainable, new AdamWOptions(WeightDecay: options.WeightDecay));
        var step = new OptimizerStep(trainable, optimizer, options.MaxGradNorm);
        var schedule = CosineSchedule.FromRatio(options.Steps, options.WarmupRatio);
        var rng = new Random(options.Seed);
        var scenes = new Dictionary<int, SyntheticScene>();
        if (logFolder != null) Directory.CreateDirectory(logFolder);
        using var logs = logFolder is null ? null : new TrainingLogWriter(logFolder, resumedStep: 0, [.. LogColumns]);
        log($"VGGT geometry: {options.Steps} steps of {(options.SequencesPerStep > 1 ? $"{options.SequencesPerStep} × " : "")}{options.FramesPerSequence} frames from {options.SceneSeeds.Count} scenes, " +
            $"{trainable.Sum(p => p.Parameter.NumberOfElements):N0} parameters");

        var steps = new List<VggtGeometryStep>();
        vggt.train();
        try
        {
            for (int i = 0; i < Math.Min(options.Steps, stopAfter ?? options.Steps); i++)
            {
                var clock = Stopwatch.StartNew();
                using var scope = torch.NewDisposeScope();
                var sequences = Enumerable.Range(0, options.SequencesPerStep).Select(j =>
                {
                    int seed = options.SceneSeeds[(int)(((long)i * options.SequencesPerStep + j) % options.SceneSeeds.Count)];
                    if (!scenes.TryGetValue(seed, out var scene)) scenes[seed] = scene = SyntheticScene.Create(seed, options.Scene);
                    var frames = Enumerable.Range(0, options.Scene.Frames).OrderBy(_ => rng.Next()).Take(options.FramesPerSequence).ToList();
                    var (images, truth) = VggtGroundTruth.FromScene(scene, frames);
                    return (Seed: seed, Frames: frames, Images: images, Truth: truth);
                }).ToList();
                var (seed, frames) = (sequences[0].Seed, sequences[0].Frames);
                step.Begin();
                var images = sequences.Count == 1 ? sequences[0].Images : torch.stack(sequences.Select(q => q.Images).ToArray());
                using var truth = sequences.Count == 1 ? sequences[0].Truth : VggtGroundTruth.Concat([.. sequences.Select(q => q.Truth)]);
                using var predictions = vggt.forward(images.to(model.Device));
                using var terms = VggtLoss.Compute(predictions, truth, options.Loss);
                terms.Objective.backward();
                double factor = schedule.Factor(i);
                double norm = step.Update(group => options.LearningRate * factor);
                var losses = terms.Named.ToDictionary(t => t.Name, t => (double)t.Value.item<float>());
                var entry = new VggtGeometryStep(i + 1, seed, frames, losses, norm, options.LearningRate * factor, clock.Elapsed.TotalSeconds);
                steps.Add(entry);
                var row = new Dictionary<string, double?>(losses.Select(kv => KeyValuePair.Create(kv.Key, (double?)kv.Value)))
                {
                    ["scene_seed"] = seed, ["grad_norm"] = norm, ["learning_rate"] = entry.LearningRate, ["seconds"] = entry.Seconds,
                };
                logs?.Write(entry.Step, row);
                if (entry.Step % 10 == 0 || entry.Step == options.Steps)
                    log(string.Create(CultureInfo.InvariantCulture,
                        $"vggt step {entry.Step}/{options.Steps}  objective {losses["objective"]:F4}  camera {losses["loss_camera"]:F4}  " +
                        $"depth {losses["loss_reg_depth"]:F4}  point {losses["loss_reg_point"]:F4}  grad_norm {norm:F3}  {entry.Seconds:F2} s"));
            }
        }
        finally
        {
            vggt.eval();
            foreach (var p in trainable) p.Parameter.grad = null;
        }
        return steps;
    }
}
