using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// The aggregator's patch embed: a DINOv2 ViT (ViT-L/14 with registers in VGGT-1B) run per frame, returning the
/// final-norm patch tokens ("x_norm_patchtokens"). <c>mask_token</c> is part of the checkpoint but never used.
/// </summary>
public sealed class DinoVisionTransformer : nn.Module
{
    const double NormEps = 1e-6;

    readonly int _patchSize;
    readonly int _pretrainGrid;   // img_size / patch_size: the pos_embed table is pretrainGrid × pretrainGrid

    public readonly DinoConvPatchEmbed patch_embed;
    public readonly Parameter cls_token;
    public readonly Parameter pos_embed;
    public readonly Parameter register_tokens;
    public readonly Parameter mask_token;
    public readonly ModuleList<VggtBlock> blocks;
    public readonly LayerNorm norm;

    public DinoVisionTransformer(int imgSize, int patchSize, int numRegisterTokens, DinoPatchEmbedConfig config,
        Device? device = null, ScalarType? dtype = null) : base(nameof(DinoVisionTransformer))
    {
        _patchSize = patchSize;
        _pretrainGrid = imgSize / patchSize;
        int dim = config.EmbedDim;
        patch_embed = new DinoConvPatchEmbed(patchSize, dim, device, dtype);
        cls_token = nn.Parameter(torch.zeros([1, 1, dim], dtype: dtype, device: device));
        pos_embed = nn.Parameter(torch.zeros([1, 1 + _pretrainGrid * _pretrainGrid, dim], dtype: dtype, device: device));
        register_tokens = nn.Parameter(torch.zeros([1, numRegisterTokens, dim], dtype: dtype, device: device));
        mask_token = nn.Parameter(torch.zeros([1, dim], dtype: dtype, device: device));
        blocks = nn.ModuleList(Enumerable.Range(0, config.Depth)
            .Select(_ => new VggtBlock(dim, config.NumHeads, config.MlpRatio, NormEps, qkNorm: false, device, dtype)).ToArray());
        norm = nn.LayerNorm(dim, eps: NormEps, device: device, dtype: dtype);
        RegisterComponents();
    }

    public int NumRegisterTokens => (int)register_tokens.shape[1];

    /// <summary>Normalised images [N, 3, H, W] (<see cref="VggtAggregator.NormalizeImages"/>) → the final-norm patch
    /// tokens [N, (H/14)·(W/14), C], VGGT's <c>x_norm_patchtokens</c>.</summary>
    public Tensor forward(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        long n = images.shape[0], h = images.shape[2], w = images.shape[3];
        var patches = patch_embed.forward(images);                                   // [N, P, C]
        var x = torch.cat([cls_token.expand(n, -1, -1), patches], dim: 1);
        x = x + InterpolatedPosEmbed(h / _patchSize, w / _patchSize, x.dtype);
        // Registers go right after cls and get no position embedding.
        x = torch.cat([x[.., ..1], register_tokens.expand(n, -1, -1), x[.., 1..]], dim: 1);
        foreach (var block in blocks)
        {
            var next = block.forward(x);
            x.Dispose();
            x = next;
        }
        int skip = 1 + NumRegisterTokens;
        return norm.forward(x)[.., skip..].MoveToOuterDisposeScope();
    }

    /// <summary>
    /// pos_embed for a gridH × gridW patch grid: the learned square table resized by bicubic interpolation with
    /// antialias, in fp32, to the explicit output size (interpolate_offset 0), then cast back; cls part unchanged.
    /// </summary>
    Tensor InterpolatedPosEmbed(long gridH, long gridW, ScalarType dtype)
    {
        if (gridH == _pretrainGrid && gridW == _pretrainGrid) return pos_embed.to(dtype);
        using var scope = torch.NewDisposeScope();
        var table = pos_embed.to(ScalarType.Float32);
        long dim = table.shape[2];
        var clsPart = table[.., ..1];
        // [1, M·M, C] → [1, C, M, M] → [1, C, gridH, gridW] → [1, gridH·gridW, C]
        var grid = table[.., 1..].reshape(1, _pretrainGrid, _pretrainGrid, dim).permute(0, 3, 1, 2);
        var resized = nn.functional.interpolate(grid, size: [gridH, gridW], mode: InterpolationMode.Bicubic,
            align_corners: false, antialias: true);
        var patchPart = resized.permute(0, 2, 3, 1).reshape(1, gridH * gridW, dim);
        return torch.cat([clsPart, patchPart], dim: 1).to(dtype).MoveToOuterDisposeScope();
    }
}

/// <summary>DINOv2's PatchEmbed: a stride-14 conv, flattened to tokens in row-major patch order.</summary>
public sealed class DinoConvPatchEmbed : nn.Module<Tensor, Tensor>
{
    public readonly Conv2d proj;

    public DinoConvPatchEmbed(int patchSize, int embedDim, Device? device = null, ScalarType? dtype = null) : base(nameof(DinoConvPatchEmbed))
    {
        proj = nn.Conv2d(3, embedDim, kernel_size: patchSize, stride: patchSize, bias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>[N, 3, H, W] → [N, (H/p)·(W/p), C].</summary>
    public override Tensor forward(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        return proj.forward(images).flatten(2).transpose(1, 2).MoveToOuterDisposeScope();
    }
}
