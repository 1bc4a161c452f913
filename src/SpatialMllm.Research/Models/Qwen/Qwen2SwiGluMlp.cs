using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The gated MLP of both Qwen2.5-VL towers: <c>down_proj(silu(gate_proj(x)) * up_proj(x))</c>. The vision blocks use
/// biases, the decoder does not.
/// </summary>
public sealed class Qwen2SwiGluMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear gate_proj;
    public readonly Linear up_proj;
    public readonly Linear down_proj;

    public Qwen2SwiGluMlp(long hiddenSize, long intermediateSize, bool hasBias, string hiddenAct, Device? device = null, ScalarType? dtype = null)
        : base(nameof(Qwen2SwiGluMlp))
    {
        if (hiddenAct != "silu")
            throw new NotSupportedException($"hidden_act '{hiddenAct}' is not supported (Qwen2.5-VL uses 'silu').");
        gate_proj = nn.Linear(hiddenSize, intermediateSize, hasBias, device, dtype);
        up_proj = nn.Linear(hiddenSize, intermediateSize, hasBias, device, dtype);
        down_proj = nn.Linear(intermediateSize, hiddenSize, hasBias, device, dtype);
        RegisterComponents();
    }

    /// <summary>gate_proj, up_proj and down_proj weights (the decoder's MLP has no biases).</summary>
    public (Tensor Gate, Tensor Up, Tensor Down) Weights => (gate_proj.weight!, up_proj.weight!, down_proj.weight!);

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var gated = nn.functional.silu(gate_proj.call(x), inplace: true).mul_(up_proj.call(x));
        return down_proj.call(gated).MoveToOuterDisposeScope();
    }
}
