using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>How a DPT head turns its raw output channels into values.</summary>
public enum DptActivation
{
    /// <summary>exp(y): the depth head.</summary>
    Exp,

    /// <summary>sign(y)·(exp|y| − 1): the point head.</summary>
    InverseLog,
}

/// <summary>
/// VGGT's DPT head (depth head: 2 outputs, <c>exp</c>; point head: 4 outputs, <c>inv_log</c>; confidence
/// 1 + exp(c) for both). Four aggregator layers are normalised, projected, resized to ×4, ×2, ×1, ×½ of the patch
/// grid, fused RefineNet-style, upsampled to the image size and mapped to per-pixel values.
/// </summary>
public sealed class DptHead : nn.Module
{
    const double PosEmbedRatio = 0.1;
    const int HeadFeatures2 = 32;

    readonly int _patchSize;
    readonly int[] _layerIndexes;
    readonly DptActivation _activation;

    public readonly LayerNorm norm;
    public readonly ModuleList<Conv2d> projects;
    public readonly ModuleList<nn.Module<Tensor, Tensor>> resize_layers;
    public readonly DptScratch scratch;

    public DptHead(int dimIn, int outputDim, DptActivation activation, int patchSize, DptHeadConfig config,
        Device? device = null, ScalarType? dtype = null) : base(nameof(DptHead))
    {
        if (config.OutChannels.Count != 4 || config.IntermediateLayerIdx.Count != 4)
            throw new ArgumentException("The DPT head fuses exactly 4 aggregator layers (out_channels and intermediate_layer_idx of length 4).");
        _patchSize = patchSize;
        _layerIndexes = config.IntermediateLayerIdx.ToArray();
        _activation = activation;
        var oc = config.OutChannels;
        norm = nn.LayerNorm(dimIn, device: device, dtype: dtype);
        projects = nn.ModuleList(oc.Select(c => nn.Conv2d(dimIn, c, kernel_size: 1, device: device, dtype: dtype)).ToArray());
        resize_layers = nn.ModuleList<nn.Module<Tensor, Tensor>>(
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size: 4, stride: 4, device: device, dtype: dtype),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size: 2, stride: 2, device: device, dtype: dtype),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size: 3, stride: 2, padding: 1, device: device, dtype: dtype));
        scratch = new DptScratch(oc, config.Features, HeadFeatures2, outputDim, device, dtype);
        RegisterComponents();
    }

    /// <summary>The aggregator layers this head reads.</summary>
    public IReadOnlyList<int> LayerIndexes => _layerIndexes;

    /// <summary>
    /// Aggregator layers (each [B, S, P', 2D]) → (values [B, S, H, W, outputDim−1], confidence [B, S, H, W]) for
    /// images of <paramref name="imageHeight"/> × <paramref name="imageWidth"/>, processing
    /// <paramref name="framesChunkSize"/> frames at a time (memory only; the result does not depend on it).
    /// </summary>
    public (Tensor Values, Tensor Confidence) forward(VggtLayerOutputs layers, long imageHeight, long imageWidth, int framesChunkSize = 8) =>
        Forward(layer => layers[layer], layers.PatchStartIndex, imageHeight, imageWidth, framesChunkSize);

    /// <summary>
    /// VGGT's <c>DPTHead.forward(aggregated_tokens_list, images, patch_start_idx)</c>: the same on a list of every
    /// aggregator layer's output (index = layer; each [B, S, P', 2D], concat(frame block output, global block output),
    /// e.g. from the hooks), with the image size in place of the images.
    /// </summary>
    public (Tensor Values, Tensor Confidence) forward(IReadOnlyList<Tensor> aggregatedTokensList, long imageHeight, long imageWidth,
        int patchStartIndex, int framesChunkSize = 8)
    {
        int needed = _layerIndexes.Max() + 1;
        if (aggregatedTokensList.Count < needed)
            throw new ArgumentException($"The DPT head reads aggregator layers {string.Join(", ", _layerIndexes)}: aggregated_tokens_list needs at least {needed} layers, got {aggregatedTokensList.Count}.",
                nameof(aggregatedTokensList));
        return Forward(layer => aggregatedTokensList[layer], patchStartIndex, imageHeight, imageWidth, framesChunkSize);
    }

    (Tensor Values, Tensor Confidence) Forward(Func<int, Tensor> layers, int patchStartIndex, long imageHeight, long imageWidth, int framesChunkSize)
    {
        using var scope = torch.NewDisposeScope();
        long patchH = imageHeight / _patchSize, patchW = imageWidth / _patchSize;
        foreach (int index in _layerIndexes)
        {
            var tokens = layers(index);
            if (tokens.dim() != 4 || tokens.shape[2] != patchStartIndex + patchH * patchW || tokens.shape[3] != norm.weight!.shape[0])
                throw new ArgumentException(
                    $"Aggregator layer {index} is [{string.Join(", ", tokens.shape)}]; the DPT head expects [B, S, {patchStartIndex} + {patchH}·{patchW}, {norm.weight!.shape[0]}] " +
                    $"for {imageHeight}×{imageWidth} images.");
        }
        var first = layers(_layerIndexes[0]);
        long s = first.shape[1];
        var values = new List<Tensor>();
        var confidences = new List<Tensor>();
        for (long start = 0; start < s; start += framesChunkSize)
        {
            long count = Math.Min(framesChunkSize, s - start);
            using var chunkScope = torch.NewDisposeScope();
            var (v, c) = ForwardFrames(layers, patchStartIndex, start, count, imageHeight, imageWidth);
            values.Add(v.MoveToOuterDisposeScope());
            confidences.Add(c.MoveToOuterDisposeScope());
        }
        var allValues = values.Count == 1 ? values[0] : torch.cat(values, dim: 1);
        var allConfidences = confidences.Count == 1 ? confidences[0] : torch.cat(confidences, dim: 1);
        return (allValues.MoveToOuterDisposeScope(), allConfidences.MoveToOuterDisposeScope());
    }

    (Tensor Values, Tensor Confidence) ForwardFrames(Func<int, Tensor> layers, int patchStartIndex, long start, long count, long imageHeight, long imageWidth)
    {
        var dtype = norm.weight!.dtype;
        long patchH = imageHeight / _patchSize, patchW = imageWidth / _patchSize;
        double aspect = (double)imageWidth / imageHeight;
        var features = new Tensor[4];
        for (int k = 0; k < 4; k++)
        {
            var tokens = layers(_layerIndexes[k]);
            long b = tokens.shape[0];
            // [B, S, P', 2D] → this chunk's patch tokens [B·s, P, 2D] → normalised → [B·s, 2D, patchH, patchW]
            var x = tokens[.., TensorIndex.Slice(start, start + count), patchStartIndex..].to(dtype).reshape(b * count, patchH * patchW, tokens.shape[3]);
            x = norm.forward(x).permute(0, 2, 1).reshape(b * count, tokens.shape[3], patchH, patchW);
            x = projects[k].forward(x);
            x = AddUvPosEmbed(x, aspect);
            features[k] = resize_layers[k].forward(x);
        }
        var fused = scratch.Fuse(features);                                                      // [N, features/2, 8·patchH, 8·patchW]
        fused = Resize(fused, patchH * _patchSize, patchW * _patchSize);
        fused = AddUvPosEmbed(fused, aspect);
        var output = scratch.output_conv2.forward(fused);                                        // [N, outputDim, H, W]

        var channelsLast = output.permute(0, 2, 3, 1);                                           // [N, H, W, outputDim]
        var raw = channelsLast[TensorIndex.Ellipsis, ..^1];
        var values = _activation switch
        {
            DptActivation.Exp => raw.exp(),
            DptActivation.InverseLog => raw.sign() * raw.abs().expm1(),
            _ => throw new InvalidOperationException(_activation.ToString()),
        };
        var confidence = 1 + channelsLast[TensorIndex.Ellipsis, -1].exp();
        long batch = layers(_layerIndexes[0]).shape[0];
        return (values.reshape([batch, count, .. values.shape[1..]]), confidence.reshape([batch, count, .. confidence.shape[1..]]));
    }

    /// <summary>Bilinear resize with align_corners=True, as every DPT upsampling here.</summary>
    internal static Tensor Resize(Tensor x, long height, long width) =>
        nn.functional.interpolate(x, size: [height, width], mode: InterpolationMode.Bilinear, align_corners: true);

    /// <summary>
    /// Adds 0.1 × a sinusoidal embedding of normalised UV coordinates (spanning ±aspect/diag horizontally and
    /// ±1/diag vertically, pixel centres) to a feature map [N, C, h, w]: [sin(u·ω), cos(u·ω), sin(v·ω), cos(v·ω)],
    /// ω_i = 100^(−i/(C/4)), computed in float64 like the reference.
    /// </summary>
    static Tensor AddUvPosEmbed(Tensor x, double aspect)
    {
        using var scope = torch.NewDisposeScope();
        long channels = x.shape[1], h = x.shape[2], w = x.shape[3];
        double diagonal = Math.Sqrt(aspect * aspect + 1.0);
        double spanX = aspect / diagonal, spanY = 1.0 / diagonal;
        // The reference builds the grid in the feature dtype, then multiplies by float64 frequencies.
        var u = torch.linspace(-spanX * (w - 1) / w, spanX * (w - 1) / w, w, dtype: x.dtype, device: x.device).to(ScalarType.Float64);
        var v = torch.linspace(-spanY * (h - 1) / h, spanY * (h - 1) / h, h, dtype: x.dtype, device: x.device).to(ScalarType.Float64);
        long quarter = channels / 4;
        var omega = torch.arange(quarter, dtype: ScalarType.Float64, device: x.device).div((double)quarter);
        omega = torch.full_like(omega, 100.0).pow(omega).reciprocal();
        var uAngles = torch.outer(u, omega);                                                     // [w, C/4]
        var vAngles = torch.outer(v, omega);                                                     // [h, C/4]
        var uEmbed = torch.cat([uAngles.sin(), uAngles.cos()], dim: -1).to(ScalarType.Float32);   // [w, C/2]
        var vEmbed = torch.cat([vAngles.sin(), vAngles.cos()], dim: -1).to(ScalarType.Float32);   // [h, C/2]
        var embed = torch.cat([uEmbed.unsqueeze(0).expand(h, w, channels / 2), vEmbed.unsqueeze(1).expand(h, w, channels / 2)], dim: -1);
        embed = (embed * PosEmbedRatio).permute(2, 0, 1).unsqueeze(0).to(x.dtype);                // [1, C, h, w]
        return (x + embed).MoveToOuterDisposeScope();
    }
}

/// <summary>The DPT "scratch": per-level 3×3 convs to a common width, four fusion blocks and the output convs.</summary>
public sealed class DptScratch : nn.Module
{
    public readonly Conv2d layer1_rn;
    public readonly Conv2d layer2_rn;
    public readonly Conv2d layer3_rn;
    public readonly Conv2d layer4_rn;
    public readonly FeatureFusionBlock refinenet1;
    public readonly FeatureFusionBlock refinenet2;
    public readonly FeatureFusionBlock refinenet3;
    public readonly FeatureFusionBlock refinenet4;
    public readonly Conv2d output_conv1;
    public readonly Sequential output_conv2;   // conv 3×3 → ReLU → conv 1×1 (indexes 0, 1, 2)

    public DptScratch(IReadOnlyList<int> inChannels, int features, int headFeatures2, int outputDim, Device? device, ScalarType? dtype)
        : base(nameof(DptScratch))
    {
        Conv2d Rn(int c) => nn.Conv2d(c, features, kernel_size: 3, padding: 1, bias: false, device: device, dtype: dtype);
        layer1_rn = Rn(inChannels[0]);
        layer2_rn = Rn(inChannels[1]);
        layer3_rn = Rn(inChannels[2]);
        layer4_rn = Rn(inChannels[3]);
        refinenet1 = new FeatureFusionBlock(features, hasResidual: true, device, dtype);
        refinenet2 = new FeatureFusionBlock(features, hasResidual: true, device, dtype);
        refinenet3 = new FeatureFusionBlock(features, hasResidual: true, device, dtype);
        refinenet4 = new FeatureFusionBlock(features, hasResidual: false, device, dtype);
        output_conv1 = nn.Conv2d(features, features / 2, kernel_size: 3, padding: 1, device: device, dtype: dtype);
        output_conv2 = nn.Sequential(
            ("0", nn.Conv2d(features / 2, headFeatures2, kernel_size: 3, padding: 1, device: device, dtype: dtype)),
            ("1", nn.ReLU()),
            ("2", nn.Conv2d(headFeatures2, outputDim, kernel_size: 1, device: device, dtype: dtype)));
        RegisterComponents();
    }

    /// <summary>Four resized feature maps (×4, ×2, ×1, ×½ of the patch grid) → fused map at ×8 with features/2 channels.</summary>
    public Tensor Fuse(Tensor[] levels)
    {
        using var scope = torch.NewDisposeScope();
        var l1 = layer1_rn.forward(levels[0]);
        var l2 = layer2_rn.forward(levels[1]);
        var l3 = layer3_rn.forward(levels[2]);
        var l4 = layer4_rn.forward(levels[3]);
        var output = refinenet4.forward(l4, null, l3.shape[2], l3.shape[3]);
        output = refinenet3.forward(output, l3, l2.shape[2], l2.shape[3]);
        output = refinenet2.forward(output, l2, l1.shape[2], l1.shape[3]);
        output = refinenet1.forward(output, l1, l1.shape[2] * 2, l1.shape[3] * 2);
        return output_conv1.forward(output).MoveToOuterDisposeScope();
    }
}

/// <summary>RefineNet fusion: (x + RCU1(skip)) → RCU2 → bilinear resize → 1×1 conv.</summary>
public sealed class FeatureFusionBlock : nn.Module
{
    public readonly Conv2d out_conv;
    public readonly ResidualConvUnit? resConfUnit1;
    public readonly ResidualConvUnit resConfUnit2;

    public FeatureFusionBlock(int features, bool hasResidual, Device? device, ScalarType? dtype) : base(nameof(FeatureFusionBlock))
    {
        out_conv = nn.Conv2d(features, features, kernel_size: 1, device: device, dtype: dtype);
        if (hasResidual) resConfUnit1 = new ResidualConvUnit(features, device, dtype);
        resConfUnit2 = new ResidualConvUnit(features, device, dtype);
        RegisterComponents();
    }

    public Tensor forward(Tensor x, Tensor? skip, long outHeight, long outWidth)
    {
        using var scope = torch.NewDisposeScope();
        var output = x;
        if (resConfUnit1 != null && skip is not null) output = output + resConfUnit1.forward(skip);
        output = resConfUnit2.forward(output);
        output = DptHead.Resize(output, outHeight, outWidth);
        return out_conv.forward(output).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// conv2(ReLU(conv1(ReLU(x)))) + ReLU(x). The skip adds the rectified input: the reference's in-place ReLU
/// overwrites x before the addition, and the released weights were trained with that.
/// </summary>
public sealed class ResidualConvUnit : nn.Module<Tensor, Tensor>
{
    public readonly Conv2d conv1;
    public readonly Conv2d conv2;

    public ResidualConvUnit(int features, Device? device, ScalarType? dtype) : base(nameof(ResidualConvUnit))
    {
        conv1 = nn.Conv2d(features, features, kernel_size: 3, padding: 1, device: device, dtype: dtype);
        conv2 = nn.Conv2d(features, features, kernel_size: 3, padding: 1, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var rectified = nn.functional.relu(x);
        var output = conv2.forward(nn.functional.relu(conv1.forward(rectified)));
        return (output + rectified).MoveToOuterDisposeScope();
    }
}
