using System.Diagnostics;
using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Text;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models;

/// <summary>Which visual tokens replace the <c>&lt;|video_pad|&gt;</c> embeddings (the paper's encoder ablations).</summary>
public enum FusionMode
{
    /// <summary>Qwen vision tokens + connector(VGGT): the Spatial-MLLM model.</summary>
    Full,
    /// <summary>Qwen vision tokens only; VGGT and the connector are not run ("2D only").</summary>
    VisionOnly,
    /// <summary>connector(VGGT) only; the Qwen vision tokens are zeroed ("spatial only").</summary>
    SpatialOnly,
}

/// <summary>Inference switches that need no code change.</summary>
/// <param name="SpatialLayer">VGGT aggregator layer the connector reads (negative from the end); null: the config's
/// <c>spatial_embeds_layer_idx</c>.</param>
/// <param name="Generation">Decoding settings; null: the seed's evaluation settings with the checkpoint's eos ids.</param>
/// <param name="ResizedSize">An explicit resized_height/resized_width for the frames (ScanQA: 480×640 → 476×644);
/// null: qwen-vl-utils' pixel budget for the video.</param>
public sealed record AnswerOptions(FusionMode Fusion = FusionMode.Full, int? SpatialLayer = null, int MaxNewTokens = 1024,
    GenerationOptions? Generation = null, (int Height, int Width)? ResizedSize = null);

public sealed record StageTiming(string Stage, double Milliseconds);

/// <summary>The visual tokens of one video, ready to answer any number of questions about it.</summary>
public sealed class VideoFeatures : IDisposable
{
    internal VideoFeatures(Tensor fusedEmbeds, GridThw grid, double secondPerGridT, IReadOnlyList<StageTiming> timings, FusionMode fusion)
    {
        FusedEmbeds = fusedEmbeds; Grid = grid; SecondPerGridT = secondPerGridT; Timings = timings; Fusion = fusion;
    }

    /// <summary>[merged tokens, hidden] in the model's dtype and device.</summary>
    public Tensor FusedEmbeds { get; }
    public GridThw Grid { get; }
    public double SecondPerGridT { get; }
    public IReadOnlyList<StageTiming> Timings { get; }
    public FusionMode Fusion { get; }
    public int TokenCount => (int)FusedEmbeds.shape[0];

    public void Dispose() => FusedEmbeds.Dispose();
}

/// <summary>An answer with what it cost.</summary>
public sealed record Answer(string Text, IReadOnlyList<int> GeneratedIds, int PromptTokens, int VideoTokens,
    IReadOnlyList<StageTiming> Timings, GenerationStopReason StopReason)
{
    public double TotalMilliseconds => Timings.Sum(t => t.Milliseconds);
}

/// <summary>
/// Spatial-MLLM: the Qwen2.5-VL vision tower, the VGGT aggregator and the <c>mlp_add</c> connector feeding the Qwen2.5
/// decoder — or a plain Qwen2.5-VL when the checkpoint has no spatial encoder (the paper's baseline rows).
/// </summary>
public sealed class SpatialMllmModel : IDisposable
{
    internal SpatialMllmModel(SpatialMllmConfig config, Qwen2VisionTransformer visual, Qwen2CausalLm language,
        VggtModel? vggt, MlpAddConnector? connector, Device device, ScalarType dtype, string? folder)
    {
        Config = config; Visual = visual; Language = language; Vggt = vggt; Connector = connector;
        Device = device; DType = dtype; Folder = folder;
    }

    public SpatialMllmConfig Config { get; }
    public Device Device { get; }
    public ScalarType DType { get; }
    public string? Folder { get; }
    public bool HasSpatialEncoder => Vggt != null && Connector != null;
    public LoadReport? LoadReport { get; private set; }

    internal Qwen2VisionTransformer Visual { get; }
    internal Qwen2CausalLm Language { get; }
    internal VggtModel? Vggt { get; }
    internal MlpAddConnector? Connector { get; }

    Qwen2Tokenizer? _tokenizer;
    QwenVideoProcessor? _processor;

    /// <summary>The checkpoint's tokenizer (vocab.json, merges.txt, added_tokens.json).</summary>
    public Qwen2Tokenizer Tokenizer => _tokenizer ??= Qwen2Tokenizer.FromFolder(Folder ?? throw new InvalidOperationException("This model was not loaded from a folder: it has no tokenizer."));

    /// <summary>The checkpoint's video processor (preprocessor_config.json, else Qwen2.5-VL's defaults).</summary>
    public QwenVideoProcessor Processor => _processor ??= Folder != null && File.Exists(Path.Combine(Folder, "preprocessor_config.json"))
        ? QwenVideoProcessor.FromFolder(Folder) : new QwenVideoProcessor();

    /// <summary>
    /// Called with named intermediate tensors ("pixel_values_videos", "vision_embeds", "spatial_tokens",
    /// "fused_embeds", "input_ids", "position_ids") as they are computed. The tensor lives only during the call, inside
    /// a dispose scope: to keep it, copy it out of the scope, e.g. <c>t.detach().cpu().clone().DetachFromDisposeScope()</c>.
    /// </summary>
    public Action<string, Tensor>? TensorHook { get; set; }

    /// <summary>Every module with the checkpoint prefix its parameter names continue.</summary>
    internal IEnumerable<(string Prefix, nn.Module Module)> Components()
    {
        yield return ("visual.", Visual);
        yield return ("", Language);
        if (Vggt != null) yield return (VggtModel.CheckpointPrefix, Vggt);
        if (Connector != null) yield return (MlpAddConnector.CheckpointPrefix, Connector);
    }

    /// <summary>
    /// Call after changing weights in place (an optimizer step): drops the inference-only fused copies (q/k/v), which
    /// are rebuilt from the current weights on the next forward. Checkpoint loading does this itself.
    /// </summary>
    public void WeightsUpdated()
    {
        foreach (var (_, module) in Components())
            foreach (var (_, child) in module.named_modules())
                if (child is IFusedWeights fused) fused.InvalidateFusedWeights();
    }

    /// <summary>Checkpoint keys and shapes this model has (what a complete checkpoint must hold).</summary>
    internal IEnumerable<(string Key, long[] Shape)> StateDictShapes() =>
        Components().SelectMany(c => c.Module.state_dict().Select(kv => (c.Prefix + kv.Key, kv.Value.shape)));

    /// <summary>Builds the module tree for a config with freshly initialised weights (meta device: no memory).</summary>
    internal static SpatialMllmModel Create(SpatialMllmConfig config, Device device, ScalarType dtype, string? folder = null)
    {
        var visual = new Qwen2VisionTransformer(config.Vision, device, dtype);
        var language = new Qwen2CausalLm(config.Text, device, dtype);
        VggtModel? vggt = null;
        MlpAddConnector? connector = null;
        if (config.IsSpatialMllm)
        {
            if (config.Connector!.ConnectorType != "mlp_add")
                throw new NotSupportedException($"connector_type '{config.Connector.ConnectorType}' is not supported (only mlp_add, the v1.1 release).");
            vggt = new VggtModel(config.Spatial!, device, dtype);
            connector = new MlpAddConnector(2 * config.Spatial!.EmbedDim, config.Vision.OutHiddenSize,
                config.Vision.TemporalPatchSize, config.Vision.SpatialMergeSize, device, dtype);
        }
        foreach (var m in new nn.Module?[] { visual, language, vggt, connector }) m?.eval();
        return new SpatialMllmModel(config, visual, language, vggt, connector, device, dtype, folder);
    }

    /// <summary>
    /// Loads a Spatial-MLLM or plain Qwen2.5-VL folder (config.json decides). Throws, naming the keys, when the
    /// checkpoint lacks a tensor the model needs or holds one it does not know (VGGT's track head, which Spatial-MLLM
    /// never runs, is skipped by name).
    /// </summary>
    /// <param name="device">Null: cuda when available, else cpu.</param>
    /// <param name="dtype">Null: bfloat16 on cuda, float32 on cpu.</param>
    public static SpatialMllmModel Load(string folder, Device? device = null, ScalarType? dtype = null)
    {
        TorchRuntime.EnsureLoaded();
        device ??= TorchRuntime.DefaultDevice;
        var type = dtype ?? (device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32);
        using var checkpoint = Checkpoint.Open(folder);
        ChatTemplate.EnsureSupported(folder);
        var model = Create(checkpoint.Config, device, type, folder);
        model.LoadReport = model.LoadWeights(checkpoint);
        model.LoadReport.ThrowIfIncomplete(folder);
        return model;
    }

    internal LoadReport LoadWeights(Checkpoint checkpoint)
    {
        var loaded = new List<string>();
        var missing = new List<string>();
        var skipped = new List<string>();
        foreach (var report in new[]
                 {
                     StateDictLoader.Load(Visual, checkpoint, "visual."),
                     Language.LoadFrom(checkpoint),
                     Vggt?.LoadWeights(checkpoint),
                     Connector is null ? null : StateDictLoader.Load(Connector, checkpoint, MlpAddConnector.CheckpointPrefix),
                 })
        {
            if (report is null) continue;
            loaded.AddRange(report.Loaded);
            missing.AddRange(report.Missing);
        }
        var used = loaded.ToHashSet();
        var unexpected = new List<string>();
        foreach (string key in checkpoint.Keys.Where(k => !used.Contains(k)).Order())
            (IsSkippedOnPurpose(key) ? skipped : unexpected).Add(key);
        return new LoadReport(used.Order().ToList(), missing, unexpected, skipped);
    }

    /// <summary>The track head (never run by Spatial-MLLM) and a tied checkpoint's duplicate lm_head.</summary>
    bool IsSkippedOnPurpose(string key) =>
        key.StartsWith(VggtModel.CheckpointPrefix + "track_head.", StringComparison.Ordinal)
        || (Config.Text.TieWordEmbeddings && key == "lm_head.weight");

    /// <summary>Samples and decodes frames of a video file or frame folder, then encodes them.</summary>
    public VideoFeatures EncodeVideo(string videoPath, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        var clock = Stopwatch.StartNew();
        var video = VideoSource.Open(videoPath);
        var selection = (sampler ?? FrameSampler.Uniform(16)).Select(video);
        using var frames = video.ReadFrames(selection.Indices);
        var decode = new StageTiming("decode frames", clock.Elapsed.TotalMilliseconds);
        var features = EncodeFrames(frames, options);
        return new VideoFeatures(features.FusedEmbeds, features.Grid, features.SecondPerGridT, [decode, .. features.Timings], features.Fusion);
    }

    /// <summary>
    /// uint8 frames [T, 3, H, W] at their native size → resized and patched as qwen-vl-utils does → vision tower,
    /// VGGT and connector → the fused visual tokens.
    /// </summary>
    public VideoFeatures EncodeFrames(Tensor framesUint8, AnswerOptions? options = null)
    {
        options ??= new AnswerOptions();
        var timings = new List<StageTiming>();
        var clock = Stopwatch.StartNew();
        using var inputs = Processor.Process(framesUint8, resizedSize: options.ResizedSize);
        timings.Add(Lap("preprocess", clock));
        var fused = EncodeProcessed(inputs.PixelValuesVideos, inputs.Grid, inputs.VideoTchw, options, timings);
        return new VideoFeatures(fused, inputs.Grid, inputs.SecondPerGridT, timings, EffectiveFusion(options));
    }

    FusionMode EffectiveFusion(AnswerOptions options) => HasSpatialEncoder ? options.Fusion : FusionMode.VisionOnly;

    /// <summary>
    /// The fused visual tokens with an autograd graph through the trainable parts (the vision merger and the connector;
    /// the frozen vision blocks and VGGT run without one): fine-tuning's encoder (<see cref="Training.SftObjective"/>).
    /// </summary>
    /// <param name="spatialTokens">VGGT's connector layer for these frames computed before (<see cref="SpatialTokens"/>;
    /// VGGT is frozen, so it can be computed once per video); null: computed here.</param>
    public Tensor EncodeForTraining(Tensor pixelValues, GridThw grid, Tensor videoTchw, Tensor? spatialTokens = null) =>
        EncodeProcessed(pixelValues, grid, videoTchw, new AnswerOptions(), [], withGradient: true, spatialTokens);

    /// <summary>The VGGT aggregator layer the connector reads, without autograd: [T, 5+P, 2·D].</summary>
    public Tensor SpatialTokens(Tensor videoTchw)
    {
        using var noGrad = torch.no_grad();
        return Vggt!.Aggregator.ForwardLayer(videoTchw.to(DType, Device), Config.Connector!.SpatialEmbedsLayerIdx);
    }

    /// <summary>The encoders on processor outputs: pixel_values_videos [N, 1176], the grid, and VGGT's frames in [0,1].</summary>
    internal Tensor EncodeProcessed(Tensor pixelValues, GridThw grid, Tensor videoTchw, AnswerOptions options, List<StageTiming> timings,
        bool withGradient = false, Tensor? precomputedSpatial = null)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = withGradient ? null : torch.no_grad();
        var fusion = EffectiveFusion(options);
        var clock = Stopwatch.StartNew();
        var pixels = pixelValues.to(DType, Device);
        TensorHook?.Invoke("pixel_values_videos", pixels);
        var vision = Visual.forward(pixels, grid.ToTensor().to(Device));
        TensorHook?.Invoke("vision_embeds", vision);
        timings.Add(Lap("vision tower", clock));
        if (fusion == FusionMode.VisionOnly) return vision.MoveToOuterDisposeScope();

        int layer = options.SpatialLayer ?? Config.Connector!.SpatialEmbedsLayerIdx;
        Tensor spatial; // [T, 5+P, 2·D]
        if (precomputedSpatial is not null) spatial = precomputedSpatial;
        else using (torch.no_grad()) spatial = Vggt!.Aggregator.ForwardLayer(videoTchw.to(DType, Device), layer); // VGGT is never trained
        TensorHook?.Invoke("spatial_tokens", spatial);
        timings.Add(Lap("VGGT aggregator", clock));
        var base2d = fusion == FusionMode.SpatialOnly ? torch.zeros_like(vision) : vision;
        var fused = Connector!.Forward(base2d, spatial, Vggt.Aggregator.PatchStartIndex, grid.T, grid.H, grid.W);
        TensorHook?.Invoke("fused_embeds", fused);
        timings.Add(Lap("connector", clock));
        return fused.MoveToOuterDisposeScope();
    }

    /// <summary>Answers a question about a video file or frame folder (16 uniformly sampled frames by default).</summary>
    public Answer Answer(string videoPath, string question, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        using var features = EncodeVideo(videoPath, sampler, options);
        return Answer(features, question, options);
    }

    /// <summary>Answers a question from already encoded visual tokens (encode a video once, ask many questions).</summary>
    public Answer Answer(VideoFeatures features, string question, AnswerOptions? options = null)
    {
        options ??= new AnswerOptions();
        using var scope = torch.NewDisposeScope();
        var clock = Stopwatch.StartNew();
        var prompt = ChatTemplate.Render([ChatMessage.User(new VideoContent(), ChatContent.FromText(question))]);
        var ids = ChatTemplate.ExpandPads(Tokenizer.Encode(prompt), Config.Tokens.VideoTokenId, [features.TokenCount]);
        var result = Generate(ids, features, options);
        var generated = result.Sequences[0].cpu().data<long>().Select(i => (int)i).ToList();
        Synchronize();
        var timing = Lap($"generate ({generated.Count} tokens)", clock);
        string text = Tokenizer.Decode(generated, skipSpecialTokens: true);
        return new Answer(text, generated, ids.Length, features.TokenCount, [.. features.Timings, timing], result.StopReason);
    }

    /// <summary>Prefill with the visual tokens scattered in, then cached decoding. ids: the prompt with pads expanded.</summary>
    internal GenerationResult Generate(IReadOnlyList<int> ids, VideoFeatures features, AnswerOptions options)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var inputIds = torch.tensor(ids.Select(i => (long)i).ToArray(), device: Device).unsqueeze(0);
        TensorHook?.Invoke("input_ids", inputIds);
        var embeds = Language.EmbedWithVisualTokens(inputIds, features.FusedEmbeds.to(DType, Device), Config.Tokens.VideoTokenId);
        var (positions, deltas) = RopeIndex.Compute(inputIds, Config.Tokens, Config.Vision,
            features.Grid.ToTensor().to(Device), torch.tensor(new[] { features.SecondPerGridT }, device: Device));
        TensorHook?.Invoke("position_ids", positions);
        var result = Generation.Generate(Language, inputIds, embeds, positions, deltas, options.Generation ?? DefaultGeneration(options.MaxNewTokens));
        foreach (var t in result.StepLogits.Append(result.Sequences)) t.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>The seed's evaluation decoding with the checkpoint's eos ids and repetition penalty
    /// (generation_config.json when present, else config.json and no penalty).</summary>
    public GenerationOptions DefaultGeneration(int maxNewTokens = 1024)
    {
        var eos = Config.Tokens.EosTokenIds;
        double penalty = 1.0;
        string? path = Folder is null ? null : Path.Combine(Folder, "generation_config.json");
        if (path != null && File.Exists(path))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            if (root.TryGetProperty("eos_token_id", out var e))
                eos = e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt32()).ToArray() : [e.GetInt32()];
            if (root.TryGetProperty("repetition_penalty", out var p)) penalty = p.GetDouble();
        }
        return GenerationOptions.SpatialMllmEvaluation(eos, maxNewTokens) with { RepetitionPenalty = penalty };
    }

    StageTiming Lap(string stage, Stopwatch clock)
    {
        Synchronize();
        var timing = new StageTiming(stage, clock.Elapsed.TotalMilliseconds);
        clock.Restart();
        return timing;
    }

    void Synchronize()
    {
        if (Device.type == DeviceType.CUDA) torch.cuda.synchronize(Device);
    }

    public void Dispose()
    {
        Visual.Dispose();
        Language.Dispose();
        Vggt?.Dispose();
        Connector?.Dispose();
    }
}
