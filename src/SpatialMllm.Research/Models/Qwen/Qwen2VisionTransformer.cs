using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The Qwen2.5-VL vision tower (checkpoint prefix <c>visual.</c>): patch embed, blocks with window attention (full
/// attention, restricted to one temporal slice, at <c>fullatt_block_indexes</c>), 2D rotary, and the patch merger.
/// Output rows follow the input's merge units: (video, t, row, col) over the merged grid.
/// </summary>
public sealed class Qwen2VisionTransformer : nn.Module
{
    const double RotaryTheta = 10000.0;
    /// <summary>Every RMSNorm of the tower uses 1e-6 (hard-coded in transformers, not read from the config).</summary>
    const double RmsNormEps = 1e-6;

    public readonly Qwen2VisionPatchEmbed patch_embed;
    public readonly ModuleList<Qwen2VisionBlock> blocks;
    public readonly Qwen2VisionPatchMerger merger;
    readonly Qwen2VisionConfig _config;
    readonly HashSet<int> _fullAttentionBlocks;

    public Qwen2VisionTransformer(Qwen2VisionConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2VisionTransformer))
    {
        if (config.HiddenSize % config.NumHeads != 0 || config.HeadDim % 4 != 0)
            throw new ArgumentException($"vision hidden_size {config.HiddenSize} / num_heads {config.NumHeads} must give a head_dim divisible by 4 (2D rotary).");
        if (config.WindowSize % (config.SpatialMergeSize * config.PatchSize) != 0)
            throw new ArgumentException($"window_size {config.WindowSize} must be a multiple of spatial_merge_size·patch_size.");
        _config = config;
        _fullAttentionBlocks = [.. config.FullAttentionBlockIndexes];
        patch_embed = new Qwen2VisionPatchEmbed(config.InChannels, config.TemporalPatchSize, config.PatchSize, config.HiddenSize, device, dtype);
        blocks = nn.ModuleList(Enumerable.Range(0, config.Depth).Select(_ => new Qwen2VisionBlock(config, RmsNormEps, device, dtype)).ToArray());
        merger = new Qwen2VisionPatchMerger(config.HiddenSize, config.OutHiddenSize, config.SpatialMergeSize, RmsNormEps, device, dtype);
        RegisterComponents();
    }

    public Qwen2VisionConfig Config => _config;

    ModelHooks? _hooks;
    string _patchEmbedPoint = "";
    string[] _blockPoints = [];

    /// <summary>Runs <paramref name="hooks"/> at the patch embed's output, named <c>{prefix}patch_embed</c> ([patches,
    /// hidden] in the input's merge order), and at each block's output, <c>{prefix}blocks.{i}</c> ([patches, hidden] in
    /// transformers' window order, see <see cref="get_window_index"/>): the tensors transformers' forward hooks on
    /// those modules see.</summary>
    internal void AttachHooks(ModelHooks hooks, string prefix)
    {
        _hooks = hooks;
        _patchEmbedPoint = prefix + "patch_embed";
        _blockPoints = Enumerable.Range(0, blocks.Count).Select(i => $"{prefix}blocks.{i}").ToArray();
    }

    internal IReadOnlyList<string> HookPoints => [_patchEmbedPoint, .. _blockPoints];

    /// <summary>
    /// <paramref name="pixelValues"/> [Σ t·h·w, in_chans·tp·p·p] (merge-ordered patches, as the processor emits them),
    /// <paramref name="gridThw"/> [videos, 3] (t, h, w in patches) → [Σ t·h·w / m², out_hidden_size].
    /// </summary>
    /// <remarks>
    /// transformers' forward, with the merge units in another order that keeps each attention segment's tokens together
    /// (windows batched by size, see <c>VisionAttentionPlan</c>): the same values. To run a block on its own, give it
    /// the inputs transformers' forward gives it: <see cref="get_window_index"/>, <see cref="cu_seqlens"/> and
    /// <see cref="position_embeddings"/>.
    /// </remarks>
    public Tensor forward(Tensor pixelValues, Tensor gridThw)
    {
        using var scope = torch.NewDisposeScope();
        var grids = ReadGrids(gridThw);
        int unitSize = _config.SpatialMergeSize * _config.SpatialMergeSize;
        var plan = new VisionAttentionPlan(grids, _config.SpatialMergeSize, WindowUnits);
        if (pixelValues.dim() != 2 || pixelValues.shape[0] != plan.PatchCount)
            throw new ArgumentException($"pixel_values has shape [{string.Join(", ", pixelValues.shape)}] but grid_thw describes {plan.PatchCount} patches.");

        var device = pixelValues.device;
        // Frozen blocks (fine-tuning trains the merger only) run without a graph: no activations kept for backward.
        bool frozen = torch.is_grad_enabled() && !patch_embed.parameters().Concat(blocks.parameters()).Any(p => p.requires_grad);
        Tensor x;
        using (frozen ? torch.no_grad() : null)
        {
            x = patch_embed.forward(pixelValues);
            if (_hooks is { Any: true }) x = _hooks.Run(_patchEmbedPoint, x);
            long hidden = x.shape[1];
            // [patches, hidden] → [units, m², hidden], reorder units, → [patches, hidden]
            x = x.view(-1, unitSize, hidden).index_select(0, torch.tensor(plan.UnitOrder, device: device)).view(-1, hidden);

            var (cos, sin) = RotaryCosSin(plan, device);
            using var windows = new SegmentedAttention(null, plan.WindowGroups, device);
            using var slices = new SegmentedAttention(plan.SliceOrder, plan.SliceGroups, device);
            WindowOrder? windowOrder = null;
            for (int i = 0; i < blocks.Count; i++)
            {
                x = blocks[i].forward(x, cos, sin, _fullAttentionBlocks.Contains(i) ? slices : windows);
                if (_hooks is { Any: true } && _hooks.IsSet(_blockPoints[i]))
                    x = (windowOrder ??= new WindowOrder(plan, device)).RunHooks(_hooks, _blockPoints[i], x);
            }
        }

        var merged = merger.forward(x);
        // Back to input unit order (the reference's inverse window permutation).
        return merged.index_select(0, torch.tensor(plan.UnitPosition, device: device)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// transformers' <c>rot_pos_emb</c>: the rotary angles of every patch, [Σ t·h·w, head_dim/2] fp32, in the input's
    /// (merge-ordered) patch order: <c>[row·inv_freq, col·inv_freq]</c>, inv_freq = 1/10000^(2i/(head_dim/2)).
    /// <paramref name="gridThw"/>: [videos, 3] (t, h, w in patches).
    /// </summary>
    public Tensor rot_pos_emb(Tensor gridThw) => RotaryFrequencies(VisionAttentionPlan.PatchPositions(ReadGrids(gridThw), _config.SpatialMergeSize), Device);

    /// <summary>
    /// transformers' <c>get_window_index</c>: <c>window_index</c> [Σ t·h·w / m²] int64, the merge units in window order
    /// (frame by frame, windows in raster order, units in raster order within a window), and <c>cu_window_seqlens</c>
    /// [windows + 1] int32, the window boundaries in patches. Empty windows of the reference's padding repeat a boundary
    /// (transformers' forward drops them with <c>unique_consecutive</c>; the blocks accept either).
    /// </summary>
    /// <remarks>
    /// A block's input in window order, as transformers' forward makes it from the patch embed's output <c>x</c>
    /// [Σ t·h·w, hidden]: <c>x.view(-1, m², hidden).index_select(0, window_index).view(-1, hidden)</c>; the merger's
    /// output goes back to the input order with <c>index_select(0, argsort(window_index))</c>.
    /// </remarks>
    public (Tensor WindowIndex, Tensor CuWindowSeqlens) get_window_index(Tensor gridThw)
    {
        var (windowIndex, cuWindowSeqlens) = VisionAttentionPlan.WindowIndex(ReadGrids(gridThw), _config.SpatialMergeSize, WindowUnits);
        return (torch.tensor(windowIndex, device: Device), torch.tensor(cuWindowSeqlens, device: Device));
    }

    /// <summary>
    /// The segments of the full-attention blocks (<c>fullatt_block_indexes</c>), as transformers' forward computes
    /// <c>cu_seqlens</c>: one per temporal slice (t of each video, h·w patches each), [Σ t + 1] int32 starting at 0.
    /// </summary>
    public Tensor cu_seqlens(Tensor gridThw)
    {
        var seqlens = ReadGrids(gridThw).SelectMany(g => Enumerable.Repeat(g.H * g.W, g.T));
        var boundaries = new List<int> { 0 };
        foreach (int length in seqlens) boundaries.Add(boundaries[^1] + length);
        return torch.tensor(boundaries.ToArray(), device: Device);
    }

    /// <summary>
    /// The (cos, sin) every block takes, as transformers' forward computes <c>position_embeddings</c>: <see
    /// cref="rot_pos_emb"/> in window order (<see cref="get_window_index"/>), emb = cat(angles, angles), each
    /// [Σ t·h·w, head_dim] fp32.
    /// </summary>
    public (Tensor Cos, Tensor Sin) position_embeddings(Tensor gridThw)
    {
        using var scope = torch.NewDisposeScope();
        var grids = ReadGrids(gridThw);
        var (windowIndex, _) = VisionAttentionPlan.WindowIndex(grids, _config.SpatialMergeSize, WindowUnits);
        var emb = RotaryEmb(VisionAttentionPlan.PatchPositions(grids, _config.SpatialMergeSize, windowIndex), Device);
        return (emb.cos().MoveToOuterDisposeScope(), emb.sin().MoveToOuterDisposeScope());
    }

    /// <summary>The window side in merge units: window_size / spatial_merge_size / patch_size.</summary>
    int WindowUnits => _config.WindowSize / _config.SpatialMergeSize / _config.PatchSize;

    Device Device => patch_embed.proj.weight!.device;

    /// <summary>cos and signed sin (<see cref="RotaryEmbedding.SignedSin"/>) [patches, 1, head_dim] fp32 in the plan's
    /// order.</summary>
    (Tensor Cos, Tensor Sin) RotaryCosSin(VisionAttentionPlan plan, Device device)
    {
        var emb = RotaryEmb(plan.PatchRowCol, device).unsqueeze(1);
        return (emb.cos(), RotaryEmbedding.SignedSin(emb.sin()));
    }

    /// <summary>emb = [row·inv_freq, col·inv_freq] twice, [patches, head_dim], for (row, col) pairs [patches·2].</summary>
    Tensor RotaryEmb(float[] rowCol, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var freqs = RotaryFrequencies(rowCol, device);
        return torch.cat([freqs, freqs], -1).MoveToOuterDisposeScope();
    }

    /// <summary>[row·inv_freq, col·inv_freq] [patches, head_dim/2] (rotary dim = head_dim/2) for (row, col) pairs.</summary>
    Tensor RotaryFrequencies(float[] rowCol, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var invFreq = RotaryEmbedding.InverseFrequencies(_config.HeadDim / 2, RotaryTheta, device);
        var positions = torch.tensor(rowCol, device: device).view(-1, 2, 1);
        return (positions * invFreq).flatten(1).MoveToOuterDisposeScope(); // [patches, 2, head_dim/4] → [patches, head_dim/2]
    }

    /// <summary>The permutation between the tower's processed order and transformers' window order, for the block hooks.</summary>
    sealed class WindowOrder(VisionAttentionPlan plan, Device device)
    {
        readonly Tensor _toWindowOrder = torch.tensor(plan.PatchesInWindowOrder(), device: device);
        Tensor? _fromWindowOrder;

        /// <summary>Runs the hooks at <paramref name="point"/> on <paramref name="x"/> (processed order) in window order.</summary>
        public Tensor RunHooks(ModelHooks hooks, string point, Tensor x)
        {
            var inWindowOrder = x.index_select(0, _toWindowOrder);
            var result = hooks.Run(point, inWindowOrder);
            if (result.Handle == inWindowOrder.Handle) return x;
            _fromWindowOrder ??= torch.argsort(_toWindowOrder);
            return result.index_select(0, _fromWindowOrder);
        }
    }

    List<(int T, int H, int W)> ReadGrids(Tensor gridThw)
    {
        if (gridThw.dim() != 2 || gridThw.shape[1] != 3)
            throw new ArgumentException($"grid_thw must be [videos, 3], got [{string.Join(", ", gridThw.shape)}].");
        using var host = gridThw.to(ScalarType.Int64).cpu();
        var values = host.data<long>().ToArray();
        var grids = Enumerable.Range(0, values.Length / 3).Select(i => ((int)values[3 * i], (int)values[3 * i + 1], (int)values[3 * i + 2])).ToList();
        int m = _config.SpatialMergeSize;
        foreach (var (t, h, w) in grids)
            if (t <= 0 || h <= 0 || w <= 0 || h % m != 0 || w % m != 0)
                throw new ArgumentException($"grid_thw ({t}, {h}, {w}): each size must be positive and h, w multiples of spatial_merge_size {m}.");
        return grids;
    }
}
