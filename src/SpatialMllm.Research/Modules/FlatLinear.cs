using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Modules;

/// <summary>
/// Linear layers on inputs of any rank with the bias added inside the GEMM. TorchSharp's <c>linear</c> is libtorch's
/// C++-frontend <c>F::linear</c>, which fuses the bias (<c>addmm</c>) for 2-D inputs only: on [B, N, C] it runs the matmul
/// and then a separate broadcast add, which on VGGT's [1, 25104, 1024] activations costs as much as the GEMM (H100:
/// 0.23 ms after a 0.22 ms GEMM; ~48 ms of the aggregator's 328). Python's <c>F.linear</c> (<c>at::linear</c>) flattens
/// contiguous inputs itself, so this is also what the reference computes.
/// </summary>
internal static class FlatLinear
{
    /// <summary>The layer's forward, with its LoRA adapter's update when one is active (<see cref="LoraLayer"/>: the GEMM
    /// reads the base weight directly, so the adapter's hook would not run).</summary>
    public static Tensor Forward(Linear layer, Tensor x)
    {
        var y = Apply(x, layer.weight!, layer.bias);
        return LoraLayer.Of(layer) is { Active: true } lora ? lora.AddUpdate(y, x) : y;
    }

    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias)
    {
        if (bias is null || x.dim() <= 2 || !x.is_contiguous()) return nn.functional.linear(x, weight, bias);
        using var flat = x.view(-1, x.shape[^1]);
        using var y = nn.functional.linear(flat, weight, bias);
        return y.view([.. x.shape[..^1], weight.shape[0]]);
    }
}
