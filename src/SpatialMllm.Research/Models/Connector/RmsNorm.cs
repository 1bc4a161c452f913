using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Connector;

/// <summary>
/// Qwen2RMSNorm: normalise in fp32, cast back to the input dtype, then multiply by <c>weight</c> (so a bf16
/// input meets the weight in bf16, exactly as the reference rounds).
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly double _eps;

    private readonly Parameter weight;

    public RmsNorm(long dim, double eps = 1e-6, Device? device = null, ScalarType? dtype = null) : base(nameof(RmsNorm))
    {
        _eps = eps;
        weight = nn.Parameter(torch.ones(dim, dtype: dtype, device: device));
        RegisterComponents();
    }

    public ScalarType DType => weight.dtype;

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var inputDtype = x.dtype;
        var h = x.to(ScalarType.Float32);
        var variance = h.pow(2).mean([-1], keepdim: true);
        h = h * torch.rsqrt(variance + _eps);
        return (weight * h.to(inputDtype)).MoveToOuterDisposeScope();
    }
}
