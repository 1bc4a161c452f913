using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// The VGGT aggregator (Spatial-MLLM's spatial encoder): DINOv2 patch tokens plus a camera token and register
/// tokens per frame, then <c>depth</c> rounds of frame attention (within each frame) followed by global attention
/// (across all frames). Round i outputs concat(frame-block output, global-block output) [.., S, 5+P, 2·D].
/// </summary>
public sealed class VggtAggregator : nn.Module
{
    /// <summary>LayerNorm eps of the frame/global blocks (nn.LayerNorm's default).</summary>
    const double BlockNormEps = 1e-5;
    static readonly double[] ImageNetMean = [0.485, 0.456, 0.406];
    static readonly double[] ImageNetStd = [0.229, 0.224, 0.225];

    readonly int _numHeads;

    public readonly DinoVisionTransformer patch_embed;
    public readonly ModuleList<VggtBlock> frame_blocks;
    public readonly ModuleList<VggtBlock> global_blocks;
    public readonly Parameter camera_token;     // [1, 2, 1, D]: slot 0 for the first frame, slot 1 for the others
    public readonly Parameter register_token;   // [1, 2, R, D]

    public VggtAggregator(SpatialEncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(VggtAggregator))
    {
        PatchSize = config.PatchSize;
        _numHeads = config.NumHeads;
        Depth = config.Depth;
        EmbedDim = config.EmbedDim;
        if (config.PatchEmbed.EmbedDim != config.EmbedDim)
            throw new ArgumentException($"The DINO patch embed width {config.PatchEmbed.EmbedDim} must equal the aggregator's embed_dim {config.EmbedDim}.");
        patch_embed = new DinoVisionTransformer(config.ImgSize, config.PatchSize, config.NumRegisterTokens, config.PatchEmbed, device, dtype);
        VggtBlock Block() => new(EmbedDim, config.NumHeads, config.MlpRatio, BlockNormEps, qkNorm: true, device, dtype, rope: new RotaryPositionEmbedding2D());
        frame_blocks = nn.ModuleList(Enumerable.Range(0, Depth).Select(_ => Block()).ToArray());
        global_blocks = nn.ModuleList(Enumerable.Range(0, Depth).Select(_ => Block()).ToArray());
        camera_token = nn.Parameter(torch.zeros([1, 2, 1, EmbedDim], dtype: dtype, device: device));
        register_token = nn.Parameter(torch.zeros([1, 2, config.NumRegisterTokens, EmbedDim], dtype: dtype, device: device));
        PatchStartIndex = 1 + config.NumRegisterTokens;
        RegisterComponents();
    }

    /// <summary>Number of frame/global block pairs (24 in VGGT-1B); valid layer indexes are −Depth..Depth−1.</summary>
    public int Depth { get; }

    public int EmbedDim { get; }

    /// <summary>
    /// Recompute each frame/global block in the backward pass instead of keeping its activations (VGGT's own training
    /// checkpoints these blocks): the same gradients for much less memory while VGGT trains. Only applies to forwards that
    /// record a graph.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>Whether a forward now records autograd: grad mode is on and a parameter of the aggregator requires grad
    /// (PyTorch's rule; <c>TrainableSet.Apply</c> freezes VGGT unless it is tuned). Otherwise it runs without a graph, so
    /// only one block's activations are alive at a time.</summary>
    public bool RecordsGraph => torch.is_grad_enabled() && parameters().Any(p => p.requires_grad);

    /// <summary>Where the patch tokens start in each frame's token list: after 1 camera and R register tokens (5).</summary>
    public int PatchStartIndex { get; }

    public int PatchSize { get; }

    ModelHooks? _hooks;
    string _patchEmbedPoint = "";
    string[] _framePoints = [], _globalPoints = [];

    /// <summary>Runs <paramref name="hooks"/> at the patch embed's output (<c>{prefix}patch_embed</c>, DINOv2's
    /// normalised patch tokens [B·S, P, D]), each frame block's output (<c>{prefix}frame_blocks.{i}</c>,
    /// [B·S, 5+P, D]) and global block's output (<c>{prefix}global_blocks.{i}</c>, [B, S·(5+P), D]); a replacement
    /// flows into the next block and into the layer outputs.</summary>
    internal void AttachHooks(ModelHooks hooks, string prefix)
    {
        _hooks = hooks;
        _patchEmbedPoint = prefix + "patch_embed";
        _framePoints = Enumerable.Range(0, Depth).Select(i => $"{prefix}frame_blocks.{i}").ToArray();
        _globalPoints = Enumerable.Range(0, Depth).Select(i => $"{prefix}global_blocks.{i}").ToArray();
    }

    internal IReadOnlyList<string> HookPoints => [_patchEmbedPoint, .. _framePoints.Zip(_globalPoints).SelectMany(p => new[] { p.First, p.Second })];

    /// <summary>
    /// The output of block pair <paramref name="layer"/> (negative counts from the end; −1 = the last, which
    /// Spatial-MLLM uses) for images [S, 3, H, W] or [B, S, 3, H, W] with values in [0, 1]. Returns
    /// [S, 5+P, 2·D] (or [B, S, 5+P, 2·D]). Stops after that block pair.
    /// </summary>
    public Tensor ForwardLayer(Tensor images, int layer = -1)
    {
        using var outputs = forward(images, [layer]);
        return outputs.Detach(layer);
    }

    /// <summary>
    /// Runs the aggregator and keeps only the block-pair outputs in <paramref name="keepLayers"/> (negative indexes
    /// count from the end); the loop stops after the deepest requested layer. Without a graph (<see cref="RecordsGraph"/>)
    /// only one block's activations are alive at a time besides the kept outputs; with one, the outputs are
    /// differentiable with respect to every aggregator parameter (and the blocks checkpointed when
    /// <see cref="GradientCheckpointing"/> is on). Images: [S, 3, H, W] or [B, S, 3, H, W] in [0, 1], H and W
    /// multiples of the patch size; outputs have the same leading dims.
    /// </summary>
    public VggtLayerOutputs forward(Tensor images, IEnumerable<int> keepLayers)
    {
        var keep = keepLayers.Select(NormalizeLayer).ToHashSet();
        if (keep.Count == 0) throw new ArgumentException("Ask for at least one aggregator layer.", nameof(keepLayers));
        bool batched = images.dim() == 5;
        if (!batched && images.dim() != 4)
            throw new ArgumentException($"VGGT expects images [S, 3, H, W] or [B, S, 3, H, W], got [{string.Join(", ", images.shape)}].");
        long b = batched ? images.shape[0] : 1, s = images.shape[^4], channels = images.shape[^3], h = images.shape[^2], w = images.shape[^1];
        if (channels != 3) throw new ArgumentException($"VGGT expects 3 colour channels, got images [{string.Join(", ", images.shape)}].");
        if (h % PatchSize != 0 || w % PatchSize != 0)
            throw new ArgumentException($"VGGT needs H and W divisible by the patch size {PatchSize}, got images [{string.Join(", ", images.shape)}].");

        bool graph = RecordsGraph;
        using var noGrad = graph ? null : torch.no_grad();   // frozen (Spatial-MLLM's recipe): no graph keeps block activations alive
        bool checkpointed = graph && GradientCheckpointing;
        using var scope = torch.NewDisposeScope();
        var dtype = camera_token.dtype;
        var device = camera_token.device;
        var x = NormalizeImages(images.reshape(b * s, 3, h, w));

        var patchTokens = patch_embed.forward(x);                                         // [B·S, P, D]
        x.Dispose();
        if (_hooks is { Any: true }) patchTokens = _hooks.Run(_patchEmbedPoint, patchTokens);
        long d = patchTokens.shape[2];
        var tokens = torch.cat([slice_expand_and_flatten(camera_token, b, s), slice_expand_and_flatten(register_token, b, s), patchTokens], dim: 1);
        patchTokens.Dispose();
        long tokensPerFrame = tokens.shape[1];                                            // P' = 5 + P

        int headDim = (int)(d / _numHeads);
        // pos of VGGT's aggregator (TokenPositions) as rotary tables, built once: per frame, and per sequence of S frames.
        using var frameRope = Rope2D.Create(h / PatchSize, w / PatchSize, PatchStartIndex, 1, headDim, dtype, device);
        using var globalRope = Rope2D.Create(h / PatchSize, w / PatchSize, PatchStartIndex, (int)s, headDim, dtype, device);

        var kept = new Dictionary<int, Tensor>();
        int last = keep.Max();
        for (int i = 0; i <= last; i++)
        {
            using var blockScope = torch.NewDisposeScope();
            var frameOut = Block(frame_blocks[i], tokens.view(b * s, tokensPerFrame, d), frameRope, checkpointed);     // [B·S, P', D]
            if (_hooks is { Any: true }) frameOut = _hooks.Run(_framePoints[i], frameOut);
            var globalOut = Block(global_blocks[i], frameOut.view(b, s * tokensPerFrame, d), globalRope, checkpointed); // [B, S·P', D]
            if (_hooks is { Any: true }) globalOut = _hooks.Run(_globalPoints[i], globalOut);
            if (keep.Contains(i))
            {
                var concat = torch.cat([frameOut.view(b, s, tokensPerFrame, d), globalOut.view(b, s, tokensPerFrame, d)], dim: -1);
                kept[i] = (batched ? concat : concat.squeeze(0)).MoveToOuterDisposeScope();
            }
            tokens.Dispose();
            tokens = globalOut.MoveToOuterDisposeScope();
        }
        foreach (var t in kept.Values) t.MoveToOuterDisposeScope();
        return new VggtLayerOutputs(kept, Depth, PatchStartIndex);
    }

    static Tensor Block(VggtBlock block, Tensor x, Rope2D rope, bool checkpointed) =>
        checkpointed ? CheckpointedVggtBlock.apply(block, CheckpointSegment.Input(x), rope) : block.forward(x, rope);

    int NormalizeLayer(int layer)
    {
        int index = layer < 0 ? layer + Depth : layer;
        if (index < 0 || index >= Depth)
            throw new ArgumentOutOfRangeException(nameof(layer), $"Aggregator layer {layer} does not exist (depth {Depth}: use {-Depth}..{Depth - 1}).");
        return index;
    }

    /// <summary>
    /// The patch embed's input: images [.., 3, H, W] in [0, 1] → (images − ImageNet mean) / ImageNet std in the
    /// aggregator's dtype and device (VGGT's <c>_resnet_mean</c>, <c>_resnet_std</c>).
    /// </summary>
    public Tensor NormalizeImages(Tensor images)
    {
        if (images.dim() < 3 || images.shape[^3] != 3)
            throw new ArgumentException($"VGGT normalises images [.., 3, H, W], got [{string.Join(", ", images.shape)}].", nameof(images));
        using var scope = torch.NewDisposeScope();
        var dtype = camera_token.dtype;
        var device = camera_token.device;
        var mean = torch.tensor(ImageNetMean, dtype: dtype, device: device).view(3, 1, 1);
        var std = torch.tensor(ImageNetStd, dtype: dtype, device: device).view(3, 1, 1);
        return ((images.to(dtype, device) - mean) / std).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The 2D RoPE positions of the frame blocks' tokens, as VGGT's aggregator makes <c>pos</c>: [frames,
    /// <paramref name="patchStartIndex"/> + rows·cols, 2] int64, the special tokens (camera, registers) at (0, 0) and
    /// patch (r, c) at (r + 1, c + 1) (<see cref="PositionGetter"/> + 1), the same for every frame. The global blocks
    /// take them viewed as [B, S·P', 2].
    /// </summary>
    /// <param name="frames">B·S, the frames of all sequences.</param>
    /// <param name="patchRows">H / patch size.</param>
    /// <param name="patchCols">W / patch size.</param>
    /// <param name="patchStartIndex">The special tokens per frame (<see cref="PatchStartIndex"/>, 5).</param>
    public static Tensor TokenPositions(long frames, long patchRows, long patchCols, int patchStartIndex, Device? device = null)
    {
        using var scope = torch.NewDisposeScope();
        var patches = PositionGetter.Get(frames, patchRows, patchCols, device) + 1;
        var special = torch.zeros([frames, patchStartIndex, 2], ScalarType.Int64, device);
        return torch.cat([special, patches], dim: 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// VGGT's <c>slice_expand_and_flatten</c>: the camera or register tokens [1, 2, X, D] → [B·S, X, D], slot 0 for each
    /// sequence's first frame (the reference camera) and slot 1 for the others. The frame blocks' first input is
    /// cat(camera tokens, register tokens, patch embed output) along the tokens.
    /// </summary>
    public static Tensor slice_expand_and_flatten(Tensor slots, long b, long s)
    {
        if (slots.dim() != 4 || slots.shape[0] != 1 || slots.shape[1] != 2)
            throw new ArgumentException($"slice_expand_and_flatten takes tokens [1, 2, X, D], got [{string.Join(", ", slots.shape)}].", nameof(slots));
        using var scope = torch.NewDisposeScope();
        var first = slots[.., ..1].expand(b, 1, slots.shape[2], slots.shape[3]);
        var others = slots[.., 1..].expand(b, s - 1, slots.shape[2], slots.shape[3]);
        return torch.cat([first, others], dim: 1).reshape(b * s, slots.shape[2], slots.shape[3]).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Kept aggregator block-pair outputs by layer index (negative indexes count from the end). Owns the tensors:
/// dispose it, or take a tensor out with <see cref="Detach"/>.
/// </summary>
public sealed class VggtLayerOutputs : IDisposable
{
    readonly Dictionary<int, Tensor> _layers;
    readonly int _depth;

    internal VggtLayerOutputs(Dictionary<int, Tensor> layers, int depth, int patchStartIndex)
    {
        _layers = layers;
        _depth = depth;
        PatchStartIndex = patchStartIndex;
    }

    public int PatchStartIndex { get; }

    public IReadOnlyCollection<int> Layers => _layers.Keys;

    /// <summary>Output of block pair <paramref name="layer"/> (negative = from the end).</summary>
    public Tensor this[int layer] => _layers.TryGetValue(Normalize(layer), out var t) ? t
        : throw new KeyNotFoundException($"Aggregator layer {layer} was not kept (kept: {string.Join(", ", _layers.Keys.Order())}).");

    /// <summary>Removes a layer's tensor from this collection; the caller then owns it.</summary>
    public Tensor Detach(int layer)
    {
        var t = this[layer];
        _layers.Remove(Normalize(layer));
        return t;
    }

    int Normalize(int layer) => layer < 0 ? layer + _depth : layer;

    public void Dispose()
    {
        foreach (var t in _layers.Values) t.Dispose();
        _layers.Clear();
    }
}
