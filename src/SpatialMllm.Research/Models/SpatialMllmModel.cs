using SpatialMllm.Research.Modules;
using System.Diagnostics;
using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models;

/// <summary>
/// Spatial-MLLM: the Qwen2.5-VL vision tower, the VGGT aggregator and the <c>mlp_add</c> connector feeding the Qwen2.5
/// decoder — or a plain Qwen2.5-VL when the checkpoint has no spatial encoder (the paper's baseline rows).
/// </summary>
public sealed partial class SpatialMllmModel : IDisposable
{
    internal SpatialMllmModel(SpatialMllmConfig config, Qwen2VisionTransformer visual, Qwen2CausalLm language,
        VggtModel? vggt, ISpatialConnector? connector, Device device, ScalarType dtype, string? folder)
    {
        Config = config; this.visual = visual; Language = language; Device = device; DType = dtype; Folder = folder;
        spatial_encoder = vggt is null ? null : new VggtSpatialEncoder(vggt);
        _connector = connector;
        Hooks = new ModelHooks(() => HookPoints);
        visual.AttachHooks(Hooks, "visual.");
        language.model.AttachHooks(Hooks, "model.");
        vggt?.aggregator.AttachHooks(Hooks, VggtModel.CheckpointPrefix + "aggregator.");
    }

    public SpatialMllmConfig Config { get; }
    public Device Device { get; }
    public ScalarType DType { get; }
    public string? Folder { get; }
    public bool HasSpatialEncoder => spatial_encoder != null && _connector != null;
    public LoadReport? LoadReport { get; private set; }

    // The components under the reference's attribute names (SpatialMLLMForConditionalGeneration, checkpoint prefixes).

    /// <summary>The Qwen2.5-VL vision tower (<c>visual.</c>): <c>patch_embed</c>, <c>blocks[i]</c>, <c>merger</c>.</summary>
    public Qwen2VisionTransformer visual { get; }

    /// <summary>The Qwen2.5 decoder (<c>model.</c>): <c>embed_tokens</c>, <c>layers[i]</c> (<c>self_attn</c>, <c>mlp</c>,
    /// <c>input_layernorm</c>, <c>post_attention_layernorm</c>), <c>norm</c>.</summary>
    public Qwen2TextModel model => Language.model;

    /// <summary>The LM head (<c>lm_head.</c>); with <c>tie_word_embeddings</c> its weight is <c>model.embed_tokens.weight</c>
    /// itself, as in transformers.</summary>
    public LmHead lm_head => Language.lm_head;

    /// <summary>VGGT (<c>spatial_encoder.vggt_model.</c>): <c>aggregator</c> (<c>patch_embed</c>, <c>frame_blocks[i]</c>,
    /// <c>global_blocks[i]</c>) and the <c>camera_head</c>, <c>depth_head</c>, <c>point_head</c>; null for plain Qwen2.5-VL.</summary>
    public VggtSpatialEncoder? spatial_encoder { get; }

    ISpatialConnector? _connector;

    /// <summary>
    /// The connector (<c>connector.</c>): the checkpoint's (<see cref="MlpAddConnector"/> for v1.1) or any
    /// <see cref="ISpatialConnector"/> assigned here, e.g. one defined in a notebook cell. The model disposes the connector
    /// it holds when it is disposed; one you replace stays yours (keep it to put it back).
    /// </summary>
    public ISpatialConnector? connector
    {
        get => _connector;
        set
        {
            if (spatial_encoder is null && value is not null)
                throw new InvalidOperationException("This model has no spatial encoder (a plain Qwen2.5-VL checkpoint): a connector would have no VGGT tokens to read.");
            _connector = value;
        }
    }

    /// <summary>The decoder with its head: what generation runs.</summary>
    internal Qwen2CausalLm Language { get; }

    internal VggtModel? Vggt => spatial_encoder?.vggt_model;

    /// <summary>
    /// Forward hooks that read or replace the tensor at a named point (see <see cref="HookPoints"/>), scoped:
    /// <code>
    /// using var h = model.Hooks.Add("fused_embeds", (name, t) => t * 0.5);   // return null to keep t
    /// </code>
    /// </summary>
    public ModelHooks Hooks { get; }

    IReadOnlyList<string>? _hookPoints;

    /// <summary>
    /// Every point a hook can read or replace, in the order a forward pass meets them: <c>pixel_values_videos</c>,
    /// <c>visual.patch_embed</c> (the first block's input), <c>visual.blocks.{i}</c> (block outputs, in transformers'
    /// window order), <c>vision_embeds</c> [N, hidden] (the connector's first input),
    /// <c>spatial_encoder.vggt_model.aggregator.patch_embed</c> (DINO's patch tokens),
    /// <c>spatial_encoder.vggt_model.aggregator.frame_blocks.{i}</c> [S, 5+P, D] and
    /// <c>.global_blocks.{i}</c> [1, S·(5+P), D] (the next block's input), <c>spatial_tokens</c> [S, 5+P, 2·D] (the
    /// aggregator layer the connector reads), <c>fused_embeds</c> [N, hidden] (the connector's output),
    /// <c>input_ids</c>, <c>position_ids</c>, <c>inputs_embeds</c> [1, L, hidden], <c>model.layers.{i}</c> [1, L, hidden]
    /// (each decoder layer's output, at the prefill and at every generated token),
    /// <c>model.layers.{i}.self_attn.attn_weights</c> [1, heads, L, past + L] (softmax probabilities: setting a hook here
    /// makes that layer compute attention eagerly) and <c>model.norm</c>.
    /// </summary>
    public IReadOnlyList<string> HookPoints => _hookPoints ??= BuildHookPoints();

    IReadOnlyList<string> BuildHookPoints()
    {
        var points = new List<string> { "pixel_values_videos" };
        points.AddRange(visual.HookPoints);
        points.Add("vision_embeds");
        if (Vggt is { } vggt)
        {
            points.AddRange(vggt.aggregator.HookPoints);
            points.AddRange(["spatial_tokens", "fused_embeds"]);
        }
        points.AddRange(["input_ids", "position_ids", "inputs_embeds"]);
        points.AddRange(model.HookPoints);
        return points;
    }

    Qwen2Tokenizer? _tokenizer;
    QwenVideoProcessor? _processor;

    /// <summary>The checkpoint's tokenizer (vocab.json, merges.txt, added_tokens.json).</summary>
    public Qwen2Tokenizer Tokenizer => _tokenizer ??= Qwen2Tokenizer.FromFolder(Folder ?? throw new InvalidOperationException("This model was not loaded from a folder: it has no tokenizer."));

    /// <summary>The checkpoint's video processor (preprocessor_config.json, else Qwen2.5-VL's defaults).</summary>
    public QwenVideoProcessor Processor => _processor ??= Folder != null && File.Exists(Path.Combine(Folder, "preprocessor_config.json"))
        ? QwenVideoProcessor.FromFolder(Folder) : new QwenVideoProcessor();

    /// <summary>Every module with the checkpoint prefix its parameter names continue (a cell-made connector that is
    /// not an <c>nn.Module</c> has none).</summary>
    internal IEnumerable<(string Prefix, nn.Module Module)> Components()
    {
        yield return ("visual.", visual);
        yield return ("", Language);
        if (Vggt != null) yield return (VggtModel.CheckpointPrefix, Vggt);
        if (_connector is nn.Module connectorModule) yield return (SpatialConnectors.CheckpointPrefix, connectorModule);
    }

    /// <summary>Checkpoint keys and shapes this model has (what a complete checkpoint must hold).</summary>
    internal IEnumerable<(string Key, long[] Shape)> StateDictShapes() =>
        Components().SelectMany(c => c.Module.StateDictWithoutTiedCopies().Select(kv => (c.Prefix + kv.Key, kv.Value.shape)));

    /// <summary>Builds the module tree for a config with freshly initialised weights (meta device: no memory).</summary>
    internal static SpatialMllmModel Create(SpatialMllmConfig config, Device device, ScalarType dtype, string? folder = null)
    {
        var visual = new Qwen2VisionTransformer(config.Vision, device, dtype);
        var language = new Qwen2CausalLm(config.Text, device, dtype);
        VggtModel? vggt = null;
        ISpatialConnector? connector = null;
        if (config.IsSpatialMllm)
        {
            connector = SpatialConnectors.Create(config, device, dtype);
            vggt = new VggtModel(config.Spatial!, device, dtype);
        }
        foreach (var m in new[] { visual, language, vggt, connector as nn.Module }) m?.eval();
        return new SpatialMllmModel(config, visual, language, vggt, connector, device, dtype, folder);
    }

    /// <summary>
    /// Loads a Spatial-MLLM or plain Qwen2.5-VL folder (config.json decides). Throws, naming the keys, when the
    /// checkpoint lacks a tensor the model needs or holds one it does not know (VGGT's track head, which Spatial-MLLM
    /// never runs, is skipped by name).
    /// </summary>
    /// <param name="device">Null: cuda when available, else cpu.</param>
    /// <param name="dtype">Null: bfloat16 on cuda, float32 on cpu. float32 turns TF32 off for the process
    /// (<see cref="TorchRuntime.UseFullFloat32Precision"/>).</param>
    public static SpatialMllmModel Load(string folder, Device? device = null, ScalarType? dtype = null)
    {
        folder = Hub.HubModels.ResolveFolder(folder);
        TorchRuntime.EnsureLoaded();
        device ??= TorchRuntime.DefaultDevice;
        var type = dtype ?? (device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32);
        if (type == ScalarType.Float32) TorchRuntime.UseFullFloat32Precision();
        using var checkpoint = Checkpoint.Open(folder);
        ChatTemplate.EnsureSupported(folder);
        var model = Create(checkpoint.Config, device, type, folder);
        model.LoadReport = model.LoadWeights(checkpoint);
        model.LoadReport.ThrowIfIncomplete(folder);
        foreach (var (_, component) in model.Components()) component.KeepOutOfDisposeScopes();
        return model;
    }

    internal LoadReport LoadWeights(Checkpoint checkpoint)
    {
        var loaded = new List<string>();
        var missing = new List<string>();
        var skipped = new List<string>();
        foreach (var report in new[]
                 {
                     StateDictLoader.Load(visual, checkpoint, "visual."),
                     Language.LoadFrom(checkpoint),
                     Vggt?.LoadWeights(checkpoint),
                     _connector is nn.Module connectorModule ? StateDictLoader.Load(connectorModule, checkpoint, SpatialConnectors.CheckpointPrefix) : null,
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
        return EncodeInputs(inputs, options, timings);
    }

    /// <summary>The encoders and the connector on the processor's outputs (on any device: they are moved to the model's);
    /// <paramref name="timings"/> holds the stages before (decoding, preprocessing) and receives the encoders'.</summary>
    internal VideoFeatures EncodeInputs(QwenVideoInputs inputs, AnswerOptions options, List<StageTiming> timings)
    {
        var fused = EncodeProcessed(inputs.PixelValuesVideos, inputs.Grid, inputs.VideoTchw, options, timings);
        var fusion = EffectiveFusion(options);
        return new VideoFeatures(fused, inputs.Grid, inputs.SecondPerGridT, timings, fusion, new EncodingOrigin(this, _connector, EncoderWeights(fusion, _connector)));
    }

    FusionMode EffectiveFusion(AnswerOptions options) => HasSpatialEncoder ? options.Fusion : FusionMode.VisionOnly;

    /// <summary>
    /// The fused visual tokens with an autograd graph through the trainable parts (those whose parameters require grad:
    /// the merger and the connector in the seed's recipe, VGGT too with <c>tune_mm_spatial_encoder</c>; frozen vision
    /// blocks and a frozen VGGT run without one): fine-tuning's encoder (<see cref="Training.SftObjective"/>).
    /// </summary>
    /// <param name="videoTchw">[T, 3, H, W], or B videos of one size [B, T, 3, H, W] whose patches are concatenated in
    /// <paramref name="pixelValues"/> with the grid (B·t, h, w): the vision tower attends within each temporal slice and the
    /// connector regroups pairs of frames, so B videos are a grid of B·t slices, while VGGT sees each video as its own
    /// sequence. The tokens come out video after video.</param>
    /// <param name="spatialTokens">VGGT's connector layer for these frames computed before (<see cref="SpatialTokens"/>,
    /// e.g. once per video while VGGT is frozen); null: computed here. Used only while VGGT does not train and, when
    /// <paramref name="spatialTokensWeights"/> is given, its weights are still those (else recomputed: stale tokens
    /// would train against an old VGGT, and they carry no graph).</param>
    /// <param name="spatialTokensWeights">VGGT's weights when <paramref name="spatialTokens"/> were computed
    /// (<see cref="SpatialEncoderWeights"/>).</param>
    public Tensor EncodeForTraining(Tensor pixelValues, GridThw grid, Tensor videoTchw, Tensor? spatialTokens = null,
        WeightsSnapshot? spatialTokensWeights = null) =>
        EncodeProcessed(pixelValues, grid, videoTchw, new AnswerOptions(), [], withGradient: true,
            spatialTokens is not null && !Vggt!.aggregator.RecordsGraph && spatialTokensWeights?.FirstChange(SpatialEncoderWeights()) is null ? spatialTokens : null);

    /// <summary>The VGGT aggregator layer the connector reads, without autograd: [T, 5+P, 2·D].</summary>
    public Tensor SpatialTokens(Tensor videoTchw)
    {
        using var noGrad = torch.no_grad();
        return Vggt!.aggregator.ForwardLayer(videoTchw.to(DType, Device), Config.Connector!.SpatialEmbedsLayerIdx);
    }

    /// <summary>VGGT's aggregator weights as they are now: what <see cref="SpatialTokens"/> computes from (a cache of
    /// them is current while <see cref="WeightsSnapshot.FirstChange"/> finds no change).</summary>
    public WeightsSnapshot SpatialEncoderWeights() => WeightsSnapshot.Of([(VggtModel.CheckpointPrefix + "aggregator.", Vggt!.aggregator)]);

    /// <summary>
    /// uint8 frames [T, 3, H, W] → the two encoders' outputs without the connector (see <see cref="EncoderOutputs"/>):
    /// the pieces for a fusion of your own. <paramref name="options"/>: the VGGT layer and resized size; the fusion mode
    /// is not used (VGGT runs whenever the model has it).
    /// </summary>
    public EncoderOutputs EncodeParts(Tensor framesUint8, AnswerOptions? options = null)
    {
        options ??= new AnswerOptions();
        var timings = new List<StageTiming>();
        var clock = Stopwatch.StartNew();
        using var inputs = Processor.Process(framesUint8, resizedSize: options.ResizedSize);
        timings.Add(Lap("preprocess", clock));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (vision, spatial) = RunEncoders(inputs.PixelValuesVideos, inputs.Grid, inputs.VideoTchw, options, timings, spatial: HasSpatialEncoder);
        return new EncoderOutputs(vision.DetachFromDisposeScope(), spatial?.DetachFromDisposeScope(), Vggt?.aggregator.PatchStartIndex ?? 0,
            inputs.Grid, inputs.SecondPerGridT, timings);
    }

    /// <summary>The encoders on processor outputs: pixel_values_videos [N, 1176], the grid, and VGGT's frames in [0,1].</summary>
    internal Tensor EncodeProcessed(Tensor pixelValues, GridThw grid, Tensor videoTchw, AnswerOptions options, List<StageTiming> timings,
        bool withGradient = false, Tensor? precomputedSpatial = null)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = withGradient ? null : torch.no_grad();
        var fusion = EffectiveFusion(options);
        var (vision, spatial) = RunEncoders(pixelValues, grid, videoTchw, options, timings, spatial: fusion != FusionMode.VisionOnly, precomputedSpatial);
        if (spatial is null) return vision.MoveToOuterDisposeScope();

        var clock = Stopwatch.StartNew();
        var base2d = fusion == FusionMode.SpatialOnly ? torch.zeros_like(vision) : vision;
        var fused = _connector!.forward(base2d, spatial, Vggt!.aggregator.PatchStartIndex, grid);
        if (!fused.shape.SequenceEqual(vision.shape))
            throw new InvalidOperationException(
                $"The connector ({_connector.GetType().Name}) returned [{string.Join(", ", fused.shape)}]; the vision tokens are [{string.Join(", ", vision.shape)}] and it must keep that shape.");
        fused = Hooks.Run("fused_embeds", fused.to(DType, Device));
        timings.Add(Lap("connector", clock));
        return fused.MoveToOuterDisposeScope();
    }

    /// <summary>vision_embeds and (when <paramref name="spatial"/>) spatial_tokens, in the current dispose scope, through the hooks.</summary>
    /// <param name="precomputedSpatial">VGGT's output computed before (training computes it once per video); null: run VGGT.</param>
    (Tensor Vision, Tensor? Spatial) RunEncoders(Tensor pixelValues, GridThw grid, Tensor videoTchw, AnswerOptions options,
        List<StageTiming> timings, bool spatial, Tensor? precomputedSpatial = null)
    {
        var clock = Stopwatch.StartNew();
        var pixels = Hooks.Run("pixel_values_videos", pixelValues.to(DType, Device));
        var vision = Hooks.Run("vision_embeds", visual.forward(pixels, grid.ToTensor().to(Device)));
        timings.Add(Lap("vision tower", clock));
        if (!spatial) return (vision, null);

        int layer = options.SpatialLayer ?? Config.Connector!.SpatialEmbedsLayerIdx;
        // [T, 5+P, 2·D], with a graph only while VGGT trains (VggtAggregator.RecordsGraph)
        var raw = precomputedSpatial ?? Vggt!.aggregator.ForwardLayer(videoTchw.to(DType, Device), layer);
        if (raw.dim() == 4) raw = raw.flatten(0, 1);   // B videos [B, T, 5+P, 2·D] → [B·T, 5+P, 2·D], as their grid (B·t, h, w)
        var tokens = Hooks.Run("spatial_tokens", raw);
        timings.Add(Lap("VGGT aggregator", clock));
        return (vision, tokens);
    }

    /// <summary>
    /// Answers a question from already encoded visual tokens (encode a video once, ask many questions), with the prompt
    /// of <see cref="PromptIds(VideoFeatures, string)"/>. The answer carries each step's scores or logits when
    /// <see cref="AnswerOptions.Generation"/> asks for them (<see cref="GenerationOptions.ReturnStepScores"/>,
    /// <see cref="GenerationOptions.ReturnStepLogits"/>).
    /// </summary>
    public Answer Answer(VideoFeatures features, string question, AnswerOptions? options = null) =>
        AnswerPrompt(features, PromptIds(features, question), options ?? new AnswerOptions());

    /// <summary>Generation from a prompt whose video pads are expanded, as an <see cref="Models.Answer"/>.</summary>
    Answer AnswerPrompt(VideoFeatures features, int[] ids, AnswerOptions options)
    {
        using var scope = torch.NewDisposeScope();
        var clock = Stopwatch.StartNew();
        var result = Generate(ids, features, options);
        var generated = result.Sequences[0].cpu().data<long>().Select(i => (int)i).ToList();
        Synchronize();
        var timing = Lap($"generate ({generated.Count} tokens)", clock);
        string text = Tokenizer.Decode(generated, skipSpecialTokens: true);
        return new Answer(text, generated, ids.Length, features.TokenCount, [.. features.Timings, timing], result.StopReason,
            RowSteps(result.StepScores, 0, generated.Count), RowSteps(result.StepLogits, 0, generated.Count));
    }

    /// <summary>
    /// Answers several questions about one video together: the shared prefix (system prompt and visual tokens) is
    /// prefilled once, the questions' own tokens in one batched prefill, and the answers decoded as one batch of at most
    /// <see cref="AnswerOptions.BatchSize"/> rows, each stopping at its own eos. Greedy answers are those of
    /// <see cref="Answer(VideoFeatures, string, AnswerOptions?)"/> one question at a time.
    /// </summary>
    public IReadOnlyList<Answer> AnswerAll(VideoFeatures features, IReadOnlyList<string> questions, AnswerOptions? options = null)
    {
        options ??= new AnswerOptions();
        if (options.BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.BatchSize, "AnswerOptions.BatchSize must be at least 1.");
        var answers = new List<Answer>(questions.Count);
        foreach (var batch in questions.Chunk(options.BatchSize))
            answers.AddRange(AnswerBatch(features, batch, options));
        return answers;
    }

    /// <summary>One batch of <see cref="AnswerAll"/>; one question at a time when there is nothing to share (a single
    /// question, sharing off, a hook set, or prompts that do not share the video prefix).</summary>
    IReadOnlyList<Answer> AnswerBatch(VideoFeatures features, string[] questions, AnswerOptions options)
    {
        IReadOnlyList<Answer> OneAtATime() => [.. questions.Select(q => Answer(features, q, options))];
        if (questions.Length == 1 || !options.SharePrefix || Hooks.Any) return OneAtATime();
        var prompts = questions.Select(q => PromptIds(features, q)).ToList();
        int shared = SharedPrefixLength(prompts[0]);
        if (shared == 0 || !prompts.All(p => p.Length > shared && p.AsSpan(0, shared).SequenceEqual(prompts[0].AsSpan(0, shared))))
            return OneAtATime();

        var clock = Stopwatch.StartNew();
        var generation = options.Generation ?? DefaultGeneration(options.MaxNewTokens);
        // A captured decode graph serves one batch size: pad every batch to BatchSize rows so that one capture serves the run.
        int padRowsTo = Language.ResolveDecodeMode(Device) == DecodeStepMode.CudaGraph ? options.BatchSize : 0;
        using var result = GenerateBatch(prompts, shared, features, generation, padRowsTo);
        Synchronize();
        // The batch's time, shared out: an answer's own share of the decoder's work.
        var timing = new StageTiming($"generate (batch of {questions.Length})", clock.Elapsed.TotalMilliseconds / questions.Length);
        return RowAnswers(result, prompts, features, generation, timing);
    }

    /// <summary>Each row of a batch's result as an <see cref="Models.Answer"/>: its tokens up to and with its first eos.</summary>
    IReadOnlyList<Answer> RowAnswers(GenerationResult result, IReadOnlyList<int[]> prompts, VideoFeatures features, GenerationOptions generation, StageTiming timing)
    {
        long[] sequences = result.Sequences.cpu().data<long>().ToArray();
        long produced = result.Sequences.shape[1];
        var eos = generation.EosTokenIds.ToHashSet();
        var answers = new List<Answer>(prompts.Count);
        for (int b = 0; b < prompts.Count; b++)
        {
            var generated = new List<int>();
            bool ended = false;
            for (long j = 0; j < produced && !ended; j++)
            {
                int id = (int)sequences[b * produced + j];
                generated.Add(id);
                ended = eos.Contains(id);
            }
            string text = Tokenizer.Decode(generated, skipSpecialTokens: true);
            answers.Add(new Answer(text, generated, prompts[b].Length, features.TokenCount, [.. features.Timings, timing],
                ended ? GenerationStopReason.EndOfSequence : result.StopReason,
                RowSteps(result.StepScores, b, generated.Count), RowSteps(result.StepLogits, b, generated.Count)));
        }
        return answers;
    }

    /// <summary><see cref="Generation.GenerateBatch"/> of prompts (pads expanded) whose first <paramref name="shared"/>
    /// tokens are the same, after <paramref name="features"/>' shared prefix cache.</summary>
    internal GenerationResult GenerateBatch(IReadOnlyList<int[]> prompts, int shared, VideoFeatures features, GenerationOptions generation, int padRowsTo = 0)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var rows = new List<(Tensor Ids, Tensor Positions, long RopeDelta)>();
        Tensor? firstPositions = null;
        foreach (var ids in prompts)
        {
            var inputIds = torch.tensor(ids.Select(i => (long)i).ToArray(), device: Device);
            var (positions, deltas) = RopePositions(inputIds.unsqueeze(0), features);
            firstPositions ??= positions;
            rows.Add((inputIds, positions.select(1, 0), deltas[0].item<long>()));
        }
        var prefix = SharedPrefixCache(features, prompts[0], rows[0].Ids.unsqueeze(0), firstPositions!, shared);
        return Generation.GenerateBatch(Language, prefix, rows, generation, padRowsTo);
    }

    /// <summary>
    /// The prompt <see cref="Answer(VideoFeatures, string, AnswerOptions?)"/> sends for a question about a video: the chat template with the default system
    /// prompt, a user turn holding the video then the question, and the assistant turn's start, tokenised, with the video
    /// pad expanded to the features' visual tokens. Edit it and generate with
    /// <see cref="Generate(VideoFeatures, IReadOnlyList{int}, AnswerOptions?)"/>.
    /// </summary>
    public int[] PromptIds(VideoFeatures features, string question) =>
        PromptIds(features, [ChatMessage.User(ChatContent.Video, ChatContent.FromText(question))]);

    /// <summary>M-RoPE position ids [3, 1, L] and rope delta [1] of a prompt [1, L] about <paramref name="features"/>' video.</summary>
    (Tensor Positions, Tensor Deltas) RopePositions(Tensor inputIds, VideoFeatures features) =>
        RopeIndex.Compute(inputIds, Config.Tokens, Config.Vision,
            features.Grid.ToTensor().to(Device), torch.tensor(new[] { features.SecondPerGridT }, device: Device));

    /// <summary>Prefill with the visual tokens scattered in, then cached decoding. ids: the prompt with pads expanded.</summary>
    internal GenerationResult Generate(IReadOnlyList<int> ids, VideoFeatures features, AnswerOptions options)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var generation = options.Generation ?? DefaultGeneration(options.MaxNewTokens);
        // Hooks see every prompt and decoder token only when the whole prompt is prefilled: with a hook set, no sharing.
        if (options.SharePrefix && !Hooks.Any && SharedPrefixLength(ids) is > 0 and var shared && shared < ids.Count)
            return GenerateBatch([[.. ids]], shared, features, generation);
        var (inputIds, embeds, positions, deltas) = WholePromptInputs(ids, features);
        var result = Generation.Generate(Language, inputIds, embeds, positions, deltas, generation);
        foreach (var t in result.Tensors) t.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>
    /// The prompt's tokens up to the end of its visual tokens (the last video pad and the <c>&lt;|vision_end|&gt;</c>
    /// after it): the same for every question about a video, since the chat template puts the video before the text.
    /// 0 when the prompt has no video tokens.
    /// </summary>
    internal int SharedPrefixLength(IReadOnlyList<int> ids)
    {
        int last = -1;
        for (int i = ids.Count - 1; i >= 0 && last < 0; i--)
            if (ids[i] == Config.Tokens.VideoTokenId) last = i;
        if (last < 0) return 0;
        int length = last + 1;
        return length < ids.Count && ids[length] == Config.Tokens.VisionEndTokenId ? length + 1 : length;
    }

    /// <summary>The KV cache of the prompt's first <paramref name="shared"/> tokens, kept with <paramref name="features"/>:
    /// prefilled (inputIds [1, L], positions [3, 1, L] of the whole prompt) the first time a question asks for it.</summary>
    Qwen2KvCache SharedPrefixCache(VideoFeatures features, IReadOnlyList<int> ids, Tensor inputIds, Tensor positions, int shared)
    {
        EnsureCurrent(features);
        return features.PrefixCache(Language, ids, shared, DecoderWeights, () =>
        {
            using var prefillScope = torch.NewDisposeScope();
            var prefixIds = inputIds.narrow(1, 0, shared);
            // Checked just above: no second snapshot of the encoders' weights.
            var embeds = Language.EmbedWithVisualTokens(prefixIds, features.FusedEmbeds.to(DType, Device), Config.Tokens.VideoTokenId);
            var cache = new Qwen2KvCache(Config.Text.NumHiddenLayers, shared);
            try { Language.model.forward(embeds, positions.narrow(2, 0, shared), cache); }
            catch { cache.Dispose(); throw; }
            return cache;
        });
    }

    /// <summary>The decoder's and LM head's weights as they are now (what a cached prefix was computed from).</summary>
    WeightsSnapshot DecoderWeights() => WeightsSnapshot.Of([("", Language)]);

    /// <summary>The weights features of <paramref name="fusion"/> are computed from: the vision tower, and unless 2D only,
    /// VGGT's aggregator and <paramref name="connector"/>'s parameters (none for a connector that is not an nn.Module).</summary>
    WeightsSnapshot EncoderWeights(FusionMode fusion, ISpatialConnector? connector)
    {
        var modules = new List<(string, nn.Module)> { ("visual.", visual) };
        if (fusion != FusionMode.VisionOnly && Vggt is { } vggt)
        {
            modules.Add((VggtModel.CheckpointPrefix + "aggregator.", vggt.aggregator));
            if (connector is nn.Module connectorModule) modules.Add((SpatialConnectors.CheckpointPrefix, connectorModule));
        }
        return WeightsSnapshot.Of(modules);
    }

    /// <summary><paramref name="features"/>' tokens in the model's dtype and device (<see cref="EnsureCurrent"/>).</summary>
    internal Tensor VisualTokens(VideoFeatures features)
    {
        EnsureCurrent(features);
        return features.FusedEmbeds.to(DType, Device);
    }

    /// <summary>
    /// Refuses <paramref name="features"/> when this model encoded them and a weight they were computed from — the vision
    /// tower's, VGGT's aggregator's, the connector's that fused them — has changed since: their tokens would be those of
    /// the model as it was. (Assigning another <see cref="connector"/> does not make them stale: they stay what the
    /// connector that made them computes, as hooks and <see cref="VideoFeatures.FromTensors"/> features stay what they are.)
    /// </summary>
    internal void EnsureCurrent(VideoFeatures features)
    {
        if (features.Origin is not { } origin || !ReferenceEquals(origin.Model, this)) return;
        if (origin.Weights.FirstChange(EncoderWeights(features.Fusion ?? FusionMode.Full, origin.Connector)) is { } changed)
            throw new InvalidOperationException(
                $"These VideoFeatures were encoded before {changed} changed (an in-place edit, an optimizer step, load_state_dict " +
                "or a new Parameter): they are the tokens of the model as it was. Encode the video again (EncodeVideo / EncodeFrames).");
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
        Hooks.Clear();
        visual.Dispose();
        Language.Dispose();
        Vggt?.Dispose();
        _connector?.Dispose();
    }
}
