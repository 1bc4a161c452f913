using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Qwen;

public class TorchScriptOpsTests
{
    [Fact]
    public void Fused_rms_norm_equals_the_transformers_formula_in_float32()
    {
        // The CUDA path of Qwen2RmsNorm; in fp32 it must agree with the explicit formula to rounding.
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        var x = torch.randn(4, 7, 96) * 3;
        var weight = torch.randn(96);
        var expected = weight * (x * x.pow(2).mean([-1], keepdim: true).add(1e-6).rsqrt());
        var fused = TorchScriptOps.RmsNorm(x, weight, 1e-6);
        Assert.True(TensorComparison.MaxError(expected, fused) < 1e-5);
    }
}
