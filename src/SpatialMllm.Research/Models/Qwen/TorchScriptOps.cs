using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>libtorch ops that TorchSharp 0.107 does not wrap, called through a one-line TorchScript function.</summary>
internal static class TorchScriptOps
{
    const string Source = """
def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return torch.rms_norm(x, [x.size(-1)], weight, eps)

""";

    static readonly Lazy<jit.CompilationUnit> Unit = new(() => jit.compile(Source));

    /// <summary><c>torch.rms_norm</c> over the last dimension (a single fused kernel on CUDA).</summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps) => (Tensor)Unit.Value.invoke("rms_norm", x, weight, eps);
}
