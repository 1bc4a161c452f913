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
    string[] _blockPoints = [];

    /// <summary>Runs <paramref name="hooks"/> at each block's output, named <c>{prefix}blocks.{i}</c>.</summary>
    internal void AttachHooks(ModelHooks hooks, string prefix)
    {
        _hooks = hooks;
        _blockPoints = Enumerable.Range(0, blocks.Count).Select(i => $"{prefix}blocks.{i}").ToArray();
    }

    internal IReadOnlyList<string> HookPoints => _blockPoints;

    /// <summary>
    /// <paramref name="pixelValues"/> [Σ t·h·w, in_chans·tp·p·p] (merge-ordered patches, as the processor emits them),
    /// <paramref name="gridThw"/> [videos, 3] (t, h, w in patches) → [Σ t·h·w / m², out_hidden_size].
    /// </summary>
    public Tensor forward(Tensor pixelValues, Tensor gridThw)
    {
        using var scope = torch.NewDisposeScope();
        var grids = ReadGrids(gridThw);
        int unitSize = _config.SpatialMergeSize * _config.SpatialMergeSize;
        var plan = new VisionAttentionPlan(grids, _config.SpatialMergeSize, _config.WindowSize / _config.SpatialMergeSize / _config.PatchSize);
        if (pixelValues.dim() != 2 || pixelValues.shape[0] != plan.PatchCount)
            throw new ArgumentException($"pixel_values has shape [{string.Join(", ", pixelValues.shape)}] but grid_thw describes {plan.PatchCount} patches.");

        var device = pixelValues.device;
        // Frozen blocks (fine-tuning trains the merger only) run without a graph: no activations kept for backward.
        bool frozen = torch.is_grad_enabled() && !patch_embed.parameters().Concat(blocks.parameters()).Any(p => p.requires_grad);
        Tensor x;
        using (frozen ? torch.no_grad() : null)
        {
            x = patch_embed.forward(pixelValues);
            long hidden = x.shape[1];
            // [patches, hidden] → [units, m², hidden], reorder units, → [patches, hidden]
            x = x.view(-1, unitSize, hidden).index_select(0, torch.tensor(plan.UnitOrder, device: device)).view(-1, hidden);

            var (cos, sin) = RotaryCosSin(plan, device);
            using var windows = new SegmentedAttention(null, plan.WindowGroups, device);
            using var slices = new SegmentedAttention(plan.SliceOrder, plan.SliceGroups, device);
            for (int i = 0; i < blocks.Count; i++)
            {
                x = blocks[i].forward(x, cos, sin, _fullAttentionBlocks.Contains(i) ? slices : windows);
                if (_hooks is { Any: true }) x = _hooks.Run(_blockPoints[i], x);   // [patches, hidden] in window order
            }
        }

        var merged = merger.forward(x);
        // Back to input unit order (the reference's inverse window permutation).
        return merged.index_select(0, torch.tensor(plan.UnitPosition, device: device)).MoveToOuterDisposeScope();
    }

    /// <summary>cos and signed sin (<see cref="RotaryEmbedding.SignedSin"/>) [patches, 1, head_dim] fp32: emb =
    /// [row·inv_freq, col·inv_freq] twice (rotary dim = head_dim/2).</summary>
    (Tensor Cos, Tensor Sin) RotaryCosSin(VisionAttentionPlan plan, Device device)
    {
        var invFreq = RotaryEmbedding.InverseFrequencies(_config.HeadDim / 2, RotaryTheta, device);
        var rowCol = torch.tensor(plan.PatchRowCol, device: device).view(-1, 2, 1);
        var freqs = (rowCol * invFreq).flatten(1); // [patches, 2, head_dim/4] → [patches, head_dim/2]
        var emb = torch.cat([freqs, freqs], -1).unsqueeze(1);
        return (emb.cos(), RotaryEmbedding.SignedSin(emb.sin()));
    }

    static List<(int T, int H, int W)> ReadGrids(Tensor gridThw)
    {
        if (gridThw.dim() != 2 || gridThw.shape[1] != 3)
            throw new ArgumentException($"grid_thw must be [videos, 3], got [{string.Join(", ", gridThw.shape)}].");
        using var host = gridThw.to(ScalarType.Int64).cpu();
        var values = host.data<long>().ToArray();
        return Enumerable.Range(0, values.Length / 3).Select(i => ((int)values[3 * i], (int)values[3 * i + 1], (int)values[3 * i + 2])).ToList();
    }
}
