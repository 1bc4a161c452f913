using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// Gradient checkpointing of one aggregator block (VGGT's <c>checkpoint(block, tokens, pos)</c> in training): the forward
/// runs without a graph and keeps only its input and the rotary tables; the backward runs the block again with one and
/// backpropagates through it, which accumulates the block's parameter gradients and yields the input's.
/// </summary>
internal sealed class CheckpointedVggtBlock : SingleTensorFunction<CheckpointedVggtBlock>
{
    public override string Name => nameof(CheckpointedVggtBlock);

    /// <param name="vars">block, x [B, N, C], the <see cref="Rope2D"/> tables of the aggregator.</param>
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (block, x, rope) = ((VggtBlock)vars[0], (Tensor)vars[1], (Rope2D)vars[2]);
        ctx.save_data("block", block);
        ctx.save_for_backward([x, rope.Cos, rope.SignedSin]);
        return block.forward(x, rope);
    }

    public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
    {
        var block = (VggtBlock)ctx.get_data("block");
        var saved = ctx.get_saved_variables();
        using var enable = torch.enable_grad();
        var input = saved[0].detach().requires_grad_(true);
        using (var scope = torch.NewDisposeScope())
            block.forward(input, new Rope2D(saved[1], saved[2])).backward([gradOutput]);
        return [null!, input.grad!, null!];
    }
}
