using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Qwen2 RMSNorm (T5-style, no mean subtraction). The statistics are taken in fp32 and the normalised values are cast
/// back to the input dtype *before* the weight multiply, exactly as transformers does; doing the multiply in fp32
/// instead shifts bf16 results by one ulp often enough to matter for parity.
/// </summary>
internal sealed class Qwen2RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    public Qwen2RmsNorm(long hiddenSize, double eps, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2RmsNorm))
    {
        weight = new Parameter(torch.ones(hiddenSize, dtype: dtype, device: device));
        _eps = eps;
        RegisterComponents();
    }

    public ScalarType DType => weight.dtype;

    public Tensor Weight => weight;

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var x = input.to(ScalarType.Float32);
        // In place on fresh tensors only (x aliases an fp32 input): same ops and roundings, fewer allocations.
        var scale = x.pow(2).mean([-1], keepdim: true).add_(_eps).rsqrt_();
        var normed = (x * scale).to(input.dtype);
        if (normed.dtype != weight.dtype) normed = weight * normed;
        else normed.mul_(weight);
        return normed.MoveToOuterDisposeScope();
    }
}
