using System.Text.Json;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Text;
using TorchSharp;

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
/// measure it. Every random draw is seeded, so on CPU the same code gives the same weights.
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
    public int SftSteps { get; init; } = 1500;
    public double SftLearningRate { get; init; } = 3e-3;
    /// <summary>Stage 2 trains the vision tower too (the seed's <c>tune_mm_vision</c>, off in its recipe): frozen, ours
    /// would stay as randomly drawn.</summary>
    public bool SftTuneVision { get; init; } = true;
    /// <summary>Stage 2 trains VGGT too (<c>tune_mm_spatial_encoder</c>), after stage 1's geometry.</summary>
    public bool SftTuneSpatialEncoder { get; init; } = true;
    public int SftAccumulation { get; init; } = 8;
    /// <summary>The decoder's width (the tiny fixture's: 64) and depth (2); wider, its heads widen and M-RoPE's sections
    /// scale with them.</summary>
    public int DecoderHiddenSize { get; init; } = 64;
    public int DecoderLayers { get; init; } = 2;

    /// <summary>BPE merges learned for the tokenizer (the tiny vocabulary has room for 734 beside its 256 bytes).</summary>
    public int TokenizerMerges { get; init; } = 700;

    public VggtGeometryOptions Geometry => new(TrainSeeds, Scene, FramesPerSequence: 4, Steps: GeometrySteps)
    {
        LearningRate = 1e-3, Seed = (int)InitSeed,
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
        GradientAccumulationSteps = SftAccumulation, WarmupRatio = 0.05, SaveSteps = 0, LoggingSteps = 10, Seed = (int)InitSeed,
        VideoMinFrames = Frames, VideoMaxFrames = Frames, VideoFrameFps = 2,
        VideoMinFramePixels = Scene.Width * Scene.Height, VideoMaxFramePixels = Scene.Width * Scene.Height,
        Device = "cpu", Bf16 = false, ResumeFromCheckpoint = "none", DecodedVideoCache = TrainSeeds.Count,
        TuneMmVision = SftTuneVision, TuneMmSpatialEncoder = SftTuneSpatialEncoder,
    };

    /// <summary>The decoder's sizes in config.json (the tiny fixture's head count; the vision merger's output follows).</summary>
    internal void ConfigureDecoder(JsonObject config)
    {
        int scale = DecoderHiddenSize / 64;
        if (DecoderHiddenSize % 64 != 0 || scale < 1) throw new ArgumentException($"decoder width must be a multiple of 64, not {DecoderHiddenSize}");
        config["hidden_size"] = DecoderHiddenSize;
        config["intermediate_size"] = 2 * DecoderHiddenSize;
        config["num_hidden_layers"] = DecoderLayers;
        config["max_window_layers"] = DecoderLayers;
        config["rope_scaling"]!["mrope_section"] = new JsonArray(2 * scale, 3 * scale, 3 * scale);
        config["vision_config"]!["out_hidden_size"] = DecoderHiddenSize;
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
        log ??= Console.WriteLine;
        var work = OnOneThread(() =>
        {
            var prepared = PrepareAndTeachGeometry(workFolder, log);
            new SftTrainer(SftArguments(prepared.Geometry, prepared.Data, prepared.Sft), log).Run();
            return prepared;
        });

        Directory.CreateDirectory(outputFolder);
        foreach (string file in Directory.EnumerateFiles(work.Sft).Where(f => CheckpointWriter.IsModelFile(Path.GetFileName(f))))
            AtomicFile.Copy(file, Path.Combine(outputFolder, Path.GetFileName(file)));
        AtomicFile.Copy(Path.Combine(work.Geometry, SftTrainer.LogFile), Path.Combine(outputFolder, GeometryLogFile));
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
        log ??= Console.WriteLine;
        return OnOneThread(() =>
        {
            var work = PrepareAndTeachGeometry(workFolder, log);
            return new SftTrainer(SftArguments(work.Geometry, work.Data, work.Sft), log).Run(stopAfter: steps).Steps;
        });
    }

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

    /// <summary>The training scenes and questions, the tokenizer learned on them, the initial weights and stage 1.</summary>
    WorkFolders PrepareAndTeachGeometry(string workFolder, Action<string> log)
    {
        if (Directory.Exists(workFolder)) Directory.Delete(workFolder, recursive: true);
        string initial = Path.Combine(workFolder, "initial"), geometry = Path.Combine(workFolder, "vggt"),
            data = Path.Combine(workFolder, "data"), sft = Path.Combine(workFolder, "sft");

        log($"writing {TrainSeeds.Count} training scenes and their questions into {data}");
        var questions = SyntheticBenchmark.Write(data, TrainSeeds, Scene, PerType);
        log($"{questions.Count} training questions");

        // The tokenizer's merges learned on the training conversations: prompts a few times shorter than bytes.
        var merges = BytePairMerges.Learn(TokenizerTexts(questions), TokenizerMerges);
        TinyCheckpoint.Create(initial, InitSeed, merges: merges, configure: ConfigureDecoder);
        // Greedy decoding without transformers' repetition penalty: a penalised repeated digit ("1100") turns a number
        // the model knows into another one.
        string generation = Path.Combine(initial, "generation_config.json");
        File.WriteAllText(generation, File.ReadAllText(generation).Replace("\"repetition_penalty\": 1.05", "\"repetition_penalty\": 1.0", StringComparison.Ordinal));
        using (var model = SpatialMllmModel.Load(initial, torch.CPU, torch.ScalarType.Float32))
        {
            log($"tokenizer: {merges.Count} merges learned; a training prompt is {model.Tokenizer.Encode(VsiBenchPrompts.Build(questions[0])).Count} tokens");
            VggtGeometryTrainer.Train(model, Geometry, geometry, log);
            CheckpointWriter.Save(model, geometry);
        }
        return new WorkFolders(data, geometry, sft, SyntheticSceneEvaluation.FitMeanAnswers(questions));
    }
}
