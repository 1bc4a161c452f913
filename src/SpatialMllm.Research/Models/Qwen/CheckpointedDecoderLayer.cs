using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Gradient checkpointing of one decoder layer (torch.utils.checkpoint's reentrant form): the forward runs without a
/// graph and keeps only its input; the backward runs the layer again with one and backpropagates through it, which
/// accumulates the layer's parameter gradients and yields the input's.
/// </summary>
internal sealed class CheckpointedDecoderLayer : SingleTensorFunction<CheckpointedDecoderLayer>
{
    public override string Name => nameof(CheckpointedDecoderLayer);

    /// <param name="vars">layer, x [B, L, hidden], cos, sin, the <see cref="AttentionImplementation"/>.</param>
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (layer, x, cos, sin, implementation) = ((Qwen2DecoderLayer)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3], (AttentionImplementation)vars[4]);
        ctx.save_data("layer", layer);
        ctx.save_data("implementation", implementation);
        ctx.save_for_backward([x, cos, sin]);
        return layer.forward(x, cos, sin, null, implementation);
    }

    public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
    {
        var layer = (Qwen2DecoderLayer)ctx.get_data("layer");
        var implementation = (AttentionImplementation)ctx.get_data("implementation");
        var saved = ctx.get_saved_variables();
        using var enable = torch.enable_grad();
        var input = saved[0].detach().requires_grad_(true);
        using (var scope = torch.NewDisposeScope())
            layer.forward(input, saved[1], saved[2], null, implementation).backward([gradOutput]);
        return [null!, input.grad!, null!, null!, null!];
    }
}
