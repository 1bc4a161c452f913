using System.Text.Json;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// How <c>checkpoints/rooms-tiny</c> is made from nothing, on CPU in minutes: a Spatial-MLLM of the tiny fixture's
/// architecture and sizes (<see cref="TinyCheckpoint"/>, drawn with <see cref="InitSeed"/>) trained by this library on
/// synthetic rooms in two stages a researcher recognises:
/// <list type="number">
/// <item>VGGT taught geometry from the renderer's exact depth, poses and world points with VGGT's own losses
/// (<see cref="VggtGeometryTrainer"/>, <see cref="Geometry"/>);</item>
/// <item>the seed's SFT (<see cref="SftTrainer"/>) on the VSI-Bench-style questions of every type that
/// <see cref="SyntheticBenchmark"/> writes for <see cref="TrainSeeds"/>; unlike the seed, the vision tower and VGGT train
/// too (<see cref="SftTuneVision"/>, <see cref="SftTuneSpatialEncoder"/>): the seed's were pretrained, ours were not.</item>
/// </list>
/// Scenes are small (<see cref="Scene"/>: 16 frames of 112×84), answered from <see cref="Frames"/> uniform frames at that
/// size (<see cref="AnswerOptions"/>); <see cref="HeldOutSeeds"/> are never trained on (nor used by the tests) and
/// measure it. Every random draw is seeded, so on CPU the same code gives the same weights. On a GPU
/// (<see cref="Device"/>, float32) the same recipe trains in minutes at scale: batches of examples in one forward
/// (<see cref="SftBatchSize"/>), more scenes and steps (not bit for bit the CPU's weights).
/// </summary>
public sealed record RoomsTinyRecipe
{
    public static RoomsTinyRecipe Default { get; } = new();

    /// <summary>Files of the output folder besides the model: the two stages' logs.</summary>
    public const string GeometryLogFile = "vggt-log.csv", SftLogFile = "sft-log.csv";

    /// <summary>The mean-answer baseline fitted on the training questions (question type → answer), beside the model.</summary>
    public const string MeanAnswersFile = "mean-answers.json";

    public long InitSeed { get; init; } = 2026;
    public SyntheticSceneOptions Scene { get; init; } = new(Frames: 16, Width: 112, Height: 84);
    /// <summary>How the training and held-out scenes are written: mp4 (the committed weights were trained on their
    /// decoded pixels) or PNG frame folders (the exact rendered pixels; no ffmpeg needed, e.g. on a GPU machine without it).</summary>
    public SceneVideoFormat VideoFormat { get; init; } = SceneVideoFormat.Mp4;
    /// <summary>Frames sampled from each scene's video, for training and answering.</summary>
    public int Frames { get; init; } = 8;
    public IReadOnlyList<int> TrainSeeds { get; init; } = [.. Enumerable.Range(1000, 200)];
    /// <summary>Scenes the recipe never trains on and the tests never use: where it is measured.</summary>
    public IReadOnlyList<int> HeldOutSeeds { get; init; } = [.. Enumerable.Range(900_000, 100)];
    /// <summary>The held-out room <c>spatial-mllm demo</c> shows (neither trained on nor measured nor used by the tests).</summary>
    public int DemoSeed { get; init; } = 999_999;
    /// <summary>Questions of each type per training scene.</summary>
    public int PerType { get; init; } = 4;
    public int GeometrySteps { get; init; } = 100;
    /// <summary>Scenes per stage-1 step, in one batched VGGT forward.</summary>
    public int GeometryBatch { get; init; } = 1;
    public double GeometryLearningRate { get; init; } = 1e-3;
    public int SftSteps { get; init; } = 1500;
    public double SftLearningRate { get; init; } = 3e-3;
    /// <summary>Stage 2 trains the vision tower too (the seed's <c>tune_mm_vision</c>, off in its recipe): frozen, ours
    /// would stay as randomly drawn.</summary>
    public bool SftTuneVision { get; init; } = true;
    /// <summary>Stage 2 trains VGGT too (<c>tune_mm_spatial_encoder</c>), after stage 1's geometry.</summary>
    public bool SftTuneSpatialEncoder { get; init; } = true;
    public int SftAccumulation { get; init; } = 8;
    /// <summary>Stage 2's examples per forward (<c>per_device_train_batch_size</c>): a step trains
    /// <see cref="SftAccumulation"/> × this many, each weighing the same.</summary>
    public int SftBatchSize { get; init; } = 1;
    /// <summary>Stage 2's warm-up, a fraction of its steps (then cosine decay).</summary>
    public double SftWarmupRatio { get; init; } = 0.05;
    /// <summary>Weight of VGGT's own geometry loss (<see cref="VggtLoss"/>, ground truth from the renderer) on each SFT
    /// batch's frames, added to the SFT loss so that VGGT keeps its geometry while it learns to answer; 0: the SFT loss
    /// alone. Needs <see cref="SftTuneSpatialEncoder"/>.</summary>
    public double SftGeometryWeight { get; init; }
    /// <summary>The model has VGGT and the connector (the 2D + 3D model); false: the paper's 2D-only baseline, a plain
    /// Qwen2.5-VL of the same sizes trained on its own (no stage 1).</summary>
    public bool WithSpatialEncoder { get; init; } = true;
    /// <summary>Where both stages train: "cpu" (deterministic on one thread), "cuda" or "cuda:N" (float32).</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>The whole run's time (from the scenes on): stage 2 plans fewer steps than <see cref="SftSteps"/> when they
    /// would not fit at the pace of its first steps (its cosine schedule then ends there), and at the limit it stops and
    /// saves the model as it is (the log says so): a sweep's guarantee of weights. Null: no limit.</summary>
    public TimeSpan? TimeLimit { get; init; }
    /// <summary>The decoder's width (the tiny fixture's: 64) and depth (2); wider, its heads widen and M-RoPE's sections
    /// scale with them.</summary>
    public int DecoderHiddenSize { get; init; } = 64;
    public int DecoderLayers { get; init; } = 2;
    /// <summary>The vision tower's width (32; heads of 16 channels) and VGGT's (64; heads of 16 channels).</summary>
    public int VisionHiddenSize { get; init; } = 32;
    /// <inheritdoc cref="VisionHiddenSize"/>
    public int VggtEmbedDim { get; init; } = 64;
    /// <summary>
    /// Whether <c>lm_head</c> shares <c>model.embed_tokens</c>' weight (Qwen2.5-VL-3B's <c>tie_word_embeddings</c>; on in
    /// the committed weights). Tied and trained from scratch with AdamW, every token the model never answers (the object
    /// names among them) gets the same push through the head's softmax, at AdamW's full step size however small the
    /// gradient, so their embeddings drift together (cosine 0.7–0.9 between categories after SFT) and the decoder cannot
    /// tell "the bed" from "the chair". Untied (<c>--tie-embeddings false</c>) an input embedding moves only for what it
    /// means as input, and sizes follow the object named (README: what was tried).
    /// </summary>
    public bool TieWordEmbeddings { get; init; } = true;

    /// <summary>BPE merges learned for the tokenizer (the tiny vocabulary has room for 734 beside its 256 bytes).</summary>
    public int TokenizerMerges { get; init; } = 700;

    public VggtGeometryOptions Geometry => new(TrainSeeds, Scene, FramesPerSequence: 4, Steps: GeometrySteps)
    {
        LearningRate = GeometryLearningRate, Seed = (int)InitSeed, SequencesPerStep = GeometryBatch,
    };

    /// <summary>The sampler and answer options that match training (the frame size is kept as rendered).</summary>
    public IFrameSampler Sampler => FrameSampler.Uniform(Frames);

    public AnswerOptions AnswerOptions => new(Fusion, MaxNewTokens: 12, ResizedSize: (Scene.Height, Scene.Width));

    /// <summary>How the 2D and 3D tokens are fused when answering (an ablation at answer time; training fuses both).</summary>
    public FusionMode Fusion { get; init; } = FusionMode.Full;

    /// <summary>Stage 2's arguments: the seed's SFT at a tiny model's learning rate, frames kept at the scene's size,
    /// the RoPE time axis at the 2 fps that answering assumes.</summary>
    public TrainingArguments SftArguments(string model, string data, string output) => new()
    {
        ModelNameOrPath = model, DatasetUse = Path.Combine(data, SyntheticBenchmark.ConversationsFileName), DataPath = data, OutputDir = output,
        LearningRate = SftLearningRate, MmProjectorLr = SftLearningRate, WeightDecay = 0.0, MaxSteps = SftSteps,
        GradientAccumulationSteps = SftAccumulation, PerDeviceTrainBatchSize = SftBatchSize, WarmupRatio = SftWarmupRatio,
        SaveSteps = 0, LoggingSteps = 10, Seed = (int)InitSeed,
        VideoMinFrames = Frames, VideoMaxFrames = Frames, VideoFrameFps = 2,
        VideoMinFramePixels = Scene.Width * Scene.Height, VideoMaxFramePixels = Scene.Width * Scene.Height,
        Device = Device, Bf16 = false, ResumeFromCheckpoint = "none", DecodedVideoCache = TrainSeeds.Count,
        TuneMmVision = SftTuneVision, TuneMmSpatialEncoder = SftTuneSpatialEncoder && WithSpatialEncoder,
    };

    /// <summary>Throws, naming the setting, for sizes, counts and rates the recipe cannot train with (each named as
    /// <c>rooms-tiny train</c>'s option for it).</summary>
    public void Validate()
    {
        var problems = new List<string>();
        void Require(bool ok, string problem) { if (!ok) problems.Add(problem); }
        Require(DecoderHiddenSize >= 64 && DecoderHiddenSize % 64 == 0, $"--decoder-width must be a positive multiple of 64; got {DecoderHiddenSize}.");
        Require(DecoderLayers >= 1, $"--decoder-layers must be at least 1; got {DecoderLayers}.");
        Require(VisionHiddenSize >= 16 && VisionHiddenSize % 16 == 0, $"--vision-width must be a positive multiple of 16; got {VisionHiddenSize}.");
        Require(VggtEmbedDim >= 16 && VggtEmbedDim % 16 == 0, $"--vggt-width must be a positive multiple of 16; got {VggtEmbedDim}.");
        Require(TrainSeeds.Count >= 1, "--train-scenes must be at least 1.");
        Require(PerType >= 1, $"--per-type must be at least 1; got {PerType}.");
        Require(GeometrySteps >= 1, $"--geometry-steps must be at least 1; got {GeometrySteps}.");
        Require(GeometryBatch >= 1, $"--geometry-batch must be at least 1; got {GeometryBatch}.");
        Require(GeometryLearningRate > 0 && double.IsFinite(GeometryLearningRate), $"--geometry-lr must be a positive number; got {GeometryLearningRate}.");
        Require(SftSteps >= 1, $"--sft-steps must be at least 1; got {SftSteps}.");
        Require(SftLearningRate > 0 && double.IsFinite(SftLearningRate), $"--sft-lr must be a positive number; got {SftLearningRate}.");
        Require(SftAccumulation >= 1, $"--sft-accumulation must be at least 1; got {SftAccumulation}.");
        Require(SftBatchSize is >= 1 and <= TrainingArguments.MaxBatchSize, $"--sft-batch must be 1 to {TrainingArguments.MaxBatchSize}; got {SftBatchSize}.");
        Require(SftWarmupRatio is >= 0 and <= 1, $"--sft-warmup must be a fraction of the steps in [0, 1]; got {SftWarmupRatio}.");
        Require(SftGeometryWeight >= 0 && double.IsFinite(SftGeometryWeight), $"--sft-geometry-weight must be 0 or more; got {SftGeometryWeight}.");
        Require(Enum.IsDefined(VideoFormat), $"--video-format must be mp4 or frames; got {VideoFormat}.");
        Require(TimeLimit is null || TimeLimit > TimeSpan.Zero, $"--time-limit must be a positive number of seconds; got {TimeLimit?.TotalSeconds}.");
        Require(SftGeometryWeight == 0 || (SftTuneSpatialEncoder && WithSpatialEncoder),
            "--sft-geometry-weight needs VGGT in the model and training (--fusion Full, --tune-vggt true): its loss would change nothing.");
        try { _ = Runtime.TorchRuntime.ParseDevice(Device); }
        catch (ArgumentException e) { problems.Add($"--device: {e.Message}"); }
        if (problems.Count > 0) throw new ArgumentException(string.Join(Environment.NewLine, problems));
    }

    /// <summary>The model's sizes in config.json: the decoder's (the tiny fixture's head count; the vision merger's output
    /// follows), the vision tower's and VGGT's widths (heads of 16 channels).</summary>
    internal void ConfigureSizes(JsonObject config)
    {
        int scale = DecoderHiddenSize / 64;
        if (DecoderHiddenSize % 64 != 0 || scale < 1) throw new ArgumentException($"decoder width must be a multiple of 64, not {DecoderHiddenSize}");
        config["hidden_size"] = DecoderHiddenSize;
        config["intermediate_size"] = 2 * DecoderHiddenSize;
        config["tie_word_embeddings"] = TieWordEmbeddings;
        config["num_hidden_layers"] = DecoderLayers;
        config["max_window_layers"] = DecoderLayers;
        config["rope_scaling"]!["mrope_section"] = new JsonArray(2 * scale, 3 * scale, 3 * scale);
        var vision = config["vision_config"]!;
        vision["out_hidden_size"] = DecoderHiddenSize;
        vision["hidden_size"] = VisionHiddenSize;
        vision["intermediate_size"] = 2 * VisionHiddenSize;
        vision["num_heads"] = VisionHiddenSize / 16;
        if (config["spatial_config"] is JsonObject vggt)
        {
            vggt["embed_dim"] = VggtEmbedDim;
            vggt["num_heads"] = VggtEmbedDim / 16;
            vggt["patch_embed"]!["embed_dim"] = VggtEmbedDim;
            vggt["patch_embed"]!["num_heads"] = VggtEmbedDim / 16;
        }
    }

    /// <summary>What the tokenizer's merges are learned from: the chat's fixed words and every training question and answer.</summary>
    static IEnumerable<string> TokenizerTexts(IEnumerable<VsiBenchQuestion> questions) =>
        new[] { ChatTemplate.DefaultSystemPrompt, "system\n", "user\n", "assistant\n" }
            .Concat(questions.SelectMany(q => new[] { "\n" + VsiBenchPrompts.Build(q), q.GroundTruth }));

    /// <summary>The baseline that <see cref="Run"/> saved beside the model.</summary>
    public static IReadOnlyDictionary<string, string> ReadMeanAnswers(string modelFolder)
    {
        string path = Path.Combine(modelFolder, MeanAnswersFile);
        try { return JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(path)) ?? throw new JsonException("null"); }
        catch (Exception e) when (e is IOException or JsonException)
        {
            throw new InvalidDataException($"{path}: not the mean-answer baseline (a JSON object of question type → answer): {e.Message}", e);
        }
    }

    /// <summary>
    /// Makes the model from nothing into <paramref name="outputFolder"/> (config, tokenizer, weights, both stages' logs and
    /// the mean-answer baseline), working in <paramref name="workFolder"/> (emptied first): the training scenes and their
    /// questions, the tokenizer's merges learned on them, the initial weights, stage 1, stage 2.
    /// </summary>
    public void Run(string outputFolder, string workFolder, Action<string>? log = null)
    {
        Validate();
        log ??= Console.WriteLine;
        using var timeLimit = TimeLimit is { } limit ? new CancellationTokenSource(limit) : null;
        // Saving and copying the model take seconds: the planned steps end a little before the limit.
        DateTime? fitTo = TimeLimit is { } total ? DateTime.UtcNow + total - TimeSpan.FromSeconds(Math.Min(15, total.TotalSeconds / 10)) : null;
        var work = Train(() =>
        {
            var prepared = PrepareAndTeachGeometry(workFolder, log);
            using var geometry = SftGeometryLoss();
            new SftTrainer(SftArguments(prepared.Geometry, prepared.Data, prepared.Sft), log, auxiliaryLoss: geometry is null ? null : geometry.Loss)
                .Run(timeLimit?.Token ?? default, saveWhenCancelled: true, fitTo: fitTo);
            return prepared;
        });

        Directory.CreateDirectory(outputFolder);
        foreach (string file in Directory.EnumerateFiles(work.Sft).Where(f => CheckpointWriter.IsModelFile(Path.GetFileName(f))))
            AtomicFile.Copy(file, Path.Combine(outputFolder, Path.GetFileName(file)));
        string geometryLog = Path.Combine(work.Geometry, SftTrainer.LogFile);
        if (File.Exists(geometryLog)) AtomicFile.Copy(geometryLog, Path.Combine(outputFolder, GeometryLogFile));
        else File.Delete(Path.Combine(outputFolder, GeometryLogFile));   // a 2D-only model has no stage 1
        AtomicFile.Copy(Path.Combine(work.Sft, SftTrainer.LogFile), Path.Combine(outputFolder, SftLogFile));
        AtomicFile.WriteAllText(Path.Combine(outputFolder, MeanAnswersFile), JsonSerializer.Serialize(
            new SortedDictionary<string, string>(work.MeanAnswers.ToDictionary(), StringComparer.Ordinal), new JsonSerializerOptions { WriteIndented = true }));
        log($"rooms-tiny written to {outputFolder}");
    }

    /// <summary>
    /// <see cref="Run"/>'s path up to stage 2's <paramref name="steps"/>-th step, in <paramref name="workFolder"/> (emptied
    /// first), nothing saved: what a check of the reproduction compares with the committed <see cref="SftLogFile"/>.
    /// </summary>
    public IReadOnlyList<TrainingStepLog> FirstSftSteps(string workFolder, int steps, Action<string>? log = null)
    {
        Validate();
        log ??= Console.WriteLine;
        return Train(() =>
        {
            var work = PrepareAndTeachGeometry(workFolder, log);
            using var geometry = SftGeometryLoss();
            return new SftTrainer(SftArguments(work.Geometry, work.Data, work.Sft), log, auxiliaryLoss: geometry is null ? null : geometry.Loss).Run(stopAfter: steps).Steps;
        });
    }

    /// <summary>On the CPU, <see cref="OnOneThread"/> (the committed weights); on a GPU as it comes.</summary>
    T Train<T>(Func<T> train) => Runtime.TorchRuntime.ParseDevice(Device).type == DeviceType.CPU ? OnOneThread(train) : train();

    /// <summary>
    /// Trains with libtorch on one thread (restored after): a matmul's sums are split by the thread count, so the same
    /// code on 2 or 8 cores would draw other weights; on one thread every machine gives the committed ones (and a
    /// model this small gains little from more).
    /// </summary>
    internal static T OnOneThread<T>(Func<T> train)
    {
        int threads = torch.get_num_threads();
        torch.set_num_threads(1);
        try { return train(); }
        finally { torch.set_num_threads(threads); }
    }

    /// <summary>Where <see cref="Run"/> works: the training data, stage 1's model (stage 2's start), stage 2's output.</summary>
    sealed record WorkFolders(string Data, string Geometry, string Sft, IReadOnlyDictionary<string, string> MeanAnswers);

    /// <summary>The training scenes and questions, the tokenizer learned on them, the initial weights and stage 1 (none
    /// without VGGT).</summary>
    WorkFolders PrepareAndTeachGeometry(string workFolder, Action<string> log)
    {
        if (Directory.Exists(workFolder)) Directory.Delete(workFolder, recursive: true);
        string initial = Path.Combine(workFolder, "initial"), geometry = Path.Combine(workFolder, "vggt"),
            data = Path.Combine(workFolder, "data"), sft = Path.Combine(workFolder, "sft");

        log($"writing {TrainSeeds.Count} training scenes and their questions into {data}");
        var questions = SyntheticBenchmark.Write(data, TrainSeeds, Scene, PerType, VideoFormat);
        log($"{questions.Count} training questions");

        // The tokenizer's merges learned on the training conversations: prompts a few times shorter than bytes.
        var merges = BytePairMerges.Learn(TokenizerTexts(questions), TokenizerMerges);
        TinyCheckpoint.Create(initial, InitSeed, WithSpatialEncoder, merges, ConfigureSizes);
        // Greedy decoding without transformers' repetition penalty: a penalised repeated digit ("1100") turns a number
        // the model knows into another one.
        string generation = Path.Combine(initial, "generation_config.json");
        File.WriteAllText(generation, File.ReadAllText(generation).Replace("\"repetition_penalty\": 1.05", "\"repetition_penalty\": 1.0", StringComparison.Ordinal));
        using (var model = SpatialMllmModel.Load(initial, Runtime.TorchRuntime.ParseDevice(Device), torch.ScalarType.Float32))
        {
            log($"tokenizer: {merges.Count} merges learned; a training prompt is {model.Tokenizer.Encode(VsiBenchPrompts.Build(questions[0])).Count} tokens");
            if (WithSpatialEncoder) VggtGeometryTrainer.Train(model, Geometry, geometry, log);
            CheckpointWriter.Save(model, geometry);
        }
        return new WorkFolders(data, geometry, sft, SyntheticSceneEvaluation.FitMeanAnswers(questions));
    }

    /// <summary>Stage 2's auxiliary loss when <see cref="SftGeometryWeight"/> is set; null otherwise.</summary>
    internal SceneGeometryLoss? SftGeometryLoss() => SftGeometryWeight > 0 ? new SceneGeometryLoss(this) : null;

    /// <summary>
    /// <see cref="SftGeometryWeight"/> × VGGT's loss (<see cref="VggtLoss"/>, as stage 1 computes it) on an SFT batch's
    /// frames, as the model sees them (decoded from the videos), against the renderer's exact geometry of those frames
    /// (<see cref="VggtGroundTruth.FromScene"/>; rendered once per training scene and kept on the CPU).
    /// </summary>
    internal sealed class SceneGeometryLoss(RoomsTinyRecipe recipe) : IDisposable
    {
        readonly Dictionary<string, SyntheticScene> _scenes = recipe.TrainSeeds.Select(seed => SyntheticScene.Create(seed, recipe.Scene))
            .ToDictionary(scene => scene.SceneName);
        readonly Dictionary<string, VggtGroundTruth> _truths = [];

        public Tensor Loss(SpatialMllmModel model, IReadOnlyList<SftExample> batch)
        {
            var vggt = model.spatial_encoder?.vggt_model ?? throw new InvalidOperationException("--sft-geometry-weight: the model has no VGGT.");
            using var scope = torch.NewDisposeScope();
            var truth = VggtGroundTruth.Concat([.. batch.Select(Truth)]);
            var images = torch.stack(batch.Select(e => e.VideoTchw).ToArray()).to(torch.ScalarType.Float32, model.Device);
            if (!images.shape[..2].SequenceEqual(truth.PointMasks.shape[..2]) || !images.shape[3..].SequenceEqual(truth.PointMasks.shape[2..]))
                throw new InvalidOperationException($"--sft-geometry-weight: the frames VGGT sees [{string.Join(", ", images.shape)}] are not the size " +
                    $"the scenes were rendered at ([{string.Join(", ", truth.PointMasks.shape)}] masks); the recipe answers at the rendered size.");
            using var predictions = vggt.forward(images);
            using var terms = VggtLoss.Compute(predictions, truth, recipe.Geometry.Loss);
            return (terms.Objective * recipe.SftGeometryWeight).MoveToOuterDisposeScope();
        }

        VggtGroundTruth Truth(SftExample example)
        {
            string video = example.VideoPath ?? throw new InvalidOperationException($"{example.Source}: no video path, so no scene to take the geometry from.");
            if (!_truths.TryGetValue(video, out var truth))
            {
                string name = Path.GetFileNameWithoutExtension(video);
                var scene = _scenes.GetValueOrDefault(name) ?? throw new InvalidOperationException($"{example.Source}: {video} is not one of the recipe's training scenes.");
                var (images, rendered) = VggtGroundTruth.FromScene(scene, example.FrameIndices!);
                images.Dispose();
                // Kept beyond the step's dispose scope, until this loss is disposed.
                _truths[video] = truth = new VggtGroundTruth(rendered.Extrinsics.DetachFromDisposeScope(), rendered.Intrinsics.DetachFromDisposeScope(),
                    rendered.Depths.DetachFromDisposeScope(), rendered.WorldPoints.DetachFromDisposeScope(), rendered.PointMasks.DetachFromDisposeScope());
            }
            return truth;
        }

        public void Dispose()
        {
            foreach (var truth in _truths.Values) truth.Dispose();
            _truths.Clear();
        }
    }
}
