using SpatialMllm.Research.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>A loss added to a batch's SFT loss before the backward pass (e.g. VGGT's geometry on the batch's frames,
/// from the scenes' ground truth): a float32 scalar with a graph, on the batch's mean scale (it is weighted as the SFT
/// loss is). It runs inside the step's dispose scope.</summary>
public delegate Tensor SftAuxiliaryLoss(SpatialMllmModel model, IReadOnlyList<SftExample> batch);

/// <summary>
/// One optimizer step as transformers' Trainer takes it for the seed: the gradients cleared, each example's SFT loss
/// divided by the accumulation count and backpropagated, the global norm clipped to <c>max_grad_norm</c>, one AdamW
/// update at each group's learning rate. <see cref="SftTrainer"/> (which also averages the gradients over ranks between
/// <see cref="Accumulate(SpatialMllmModel, IReadOnlyList{SftExample}, int, SftAuxiliaryLoss?)"/> and <see cref="Update"/>) and the notebooks' <c>FineTuneDemo</c> step through it; the GRPO
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

    /// <summary>
    /// Backpropagates a batch's SFT loss (<see cref="SftObjective.Loss(SpatialMllmModel, IReadOnlyList{SftExample})"/>, the
    /// mean of its examples' losses) plus <paramref name="auxiliary"/>'s loss on the same examples, weighted by the batch's
    /// share of the step's <paramref name="examplesPerStep"/>: each example counts as one of the step's accumulated
    /// examples would. Returns the batch's mean SFT loss and the auxiliary loss (null without one). One example and no
    /// auxiliary loss: exactly <see cref="Accumulate(SpatialMllmModel, SftExample, int)"/>.
    /// </summary>
    public (double Loss, double? Auxiliary) Accumulate(SpatialMllmModel model, IReadOnlyList<SftExample> batch, int examplesPerStep,
        SftAuxiliaryLoss? auxiliary = null)
    {
        if (batch.Count == 1 && auxiliary is null) return (Accumulate(model, batch[0], examplesPerStep), null);
        using var scope = torch.NewDisposeScope();
        var loss = SftObjective.Loss(model, batch);
        var extra = auxiliary?.Invoke(model, batch);
        var total = extra is null ? loss : loss + extra;
        (total * ((double)batch.Count / examplesPerStep)).backward();
        return (loss.item<float>(), extra?.item<float>());
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
