using SpatialMllm.Research.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// One optimizer step as transformers' Trainer takes it for the seed: the gradients cleared, each example's SFT loss
/// divided by the accumulation count and backpropagated, the global norm clipped to <c>max_grad_norm</c>, one AdamW
/// update at each group's learning rate. <see cref="SftTrainer"/> (which also averages the gradients over ranks between
/// <see cref="Accumulate"/> and <see cref="Update"/>) and the notebooks' <c>FineTuneDemo</c> step through it; the GRPO
/// trainer clears and updates through it around its own loss.
/// </summary>
public sealed class OptimizerStep(IReadOnlyList<TrainableParameter> trainable, AdamW optimizer, double maxGradNorm)
{
    public IReadOnlyList<TrainableParameter> Trainable { get; } = trainable;

    /// <summary>Clears the gradients of the step before (transformers' <c>zero_grad(set_to_none=True)</c>).</summary>
    public void Begin()
    {
        foreach (var p in Trainable) p.Parameter.grad = null;
    }

    /// <summary>Backpropagates one example's loss / <paramref name="accumulationSteps"/>; returns the example's loss.</summary>
    public double Accumulate(SpatialMllmModel model, SftExample example, int accumulationSteps)
    {
        using var scope = torch.NewDisposeScope();
        var loss = SftObjective.Loss(model, example);
        (loss / accumulationSteps).backward();
        return loss.item<float>();
    }

    /// <summary>Clips the accumulated gradients (max_grad_norm ≤ 0: no clipping, the norm still measured, as in
    /// transformers) and updates; returns the norm before clipping (the logged grad_norm).</summary>
    public double Update(Func<ParameterGroup, double> learningRate)
    {
        double norm = GradientClipping.ClipGlobalNorm(Trainable.Select(p => p.Parameter.grad).OfType<Tensor>(),
            maxGradNorm > 0 ? maxGradNorm : double.PositiveInfinity);
        optimizer.Update(learningRate);
        return norm;
    }
}
