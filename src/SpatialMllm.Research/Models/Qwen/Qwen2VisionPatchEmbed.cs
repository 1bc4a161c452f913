using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Conv3d(in_chans → hidden, kernel = stride = (temporal_patch, patch, patch), no bias) over pre-cut patches. Each row
/// of <c>pixel_values</c> is exactly one kernel window flattened (channel, time, row, col), so the convolution is one
/// matmul with the weight viewed as [hidden, in_chans·tp·p·p]; the Conv3d module only holds the weight under its
/// checkpoint key and shape (<c>patch_embed.proj.weight</c>).
/// </summary>
public sealed class Qwen2VisionPatchEmbed : nn.Module<Tensor, Tensor>
{
    public readonly Conv3d proj;
    readonly long _hiddenSize;

    public Qwen2VisionPatchEmbed(int inChannels, int temporalPatchSize, int patchSize, int hiddenSize, Device? device = null, ScalarType? dtype = null)
        : base(nameof(Qwen2VisionPatchEmbed))
    {
        var kernel = ((long)temporalPatchSize, (long)patchSize, (long)patchSize);
        proj = nn.Conv3d(inChannels, hiddenSize, kernel, stride: kernel, bias: false, device: device, dtype: dtype);
        _hiddenSize = hiddenSize;
        RegisterComponents();
    }

    /// <summary>[patches, in_chans·tp·p·p] → [patches, hidden].</summary>
    public override Tensor forward(Tensor pixelValues)
    {
        using var scope = torch.NewDisposeScope();
        var weight = proj.weight!;
        if (pixelValues.shape[^1] != weight.numel() / _hiddenSize)
            throw new ArgumentException($"pixel_values rows have {pixelValues.shape[^1]} values; the patch embed expects {weight.numel() / _hiddenSize}.");
        var flatWeight = weight.view(_hiddenSize, -1);
        return nn.functional.linear(pixelValues.to(weight.dtype), flatWeight).MoveToOuterDisposeScope();
    }
}
