using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>
/// The policy GRPO's KL term holds the model near (π_ref). Full fine-tuning keeps a frozen copy of the base weights
/// (<see cref="FrozenCopyReference.FrozenCopy"/>); under LoRA it can be the trained model itself with its adapters off (TRL's
/// <c>use_adapter(model, None)</c>), which costs no second copy.
/// </summary>
public interface IReferencePolicy : IDisposable
{
    /// <summary>The reference's per-token log-probabilities [K, T] of a question's completions, without a graph.</summary>
    Tensor PerTokenLogProbs(GrpoGroup group, double temperature);
}

/// <summary>The trained model itself with its LoRA adapters switched off for the pass: the base weights, no second copy.</summary>
public sealed class AdaptersOffReference(SpatialMllmModel model, LoraModel lora) : IReferencePolicy
{
    public Tensor PerTokenLogProbs(GrpoGroup group, double temperature)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var off = lora.disable_adapter();
        // The encoders too: adapters there are part of the policy, not of the reference.
        var visual = model.EncodeForTraining(group.Video.PixelValuesVideos, group.Video.Grid, group.Video.VideoTchw, group.SpatialTokens);
        var (logProbs, _) = CompletionLogProbs.Compute(model, visual, group.PromptIds, group.Video.Grid, group.Video.SecondPerGridT,
            group.CompletionIds, temperature);
        return logProbs.MoveToOuterDisposeScope();
    }

    /// <summary>The model is the policy's: nothing of its own to release.</summary>
    public void Dispose() { }
}

/// <summary>A second copy of the base model, loaded once and never trained.</summary>
public sealed class FrozenCopyReference : IReferencePolicy
{
    readonly SpatialMllmModel _model;

    FrozenCopyReference(SpatialMllmModel model)
    {
        _model = model;
        foreach (var (_, module) in model.Components())
            foreach (var parameter in module.parameters()) parameter.requires_grad = false;
    }

    /// <summary>Loads the base model's folder again (same device and dtype as the policy).</summary>
    public static FrozenCopyReference FrozenCopy(string folder, Device device, ScalarType dtype) => new(SpatialMllmModel.Load(folder, device, dtype));

    public Tensor PerTokenLogProbs(GrpoGroup group, double temperature)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        // Its own merger and connector over the same frames (VGGT is frozen in both, so its output is shared).
        var visual = _model.EncodeForTraining(group.Video.PixelValuesVideos, group.Video.Grid, group.Video.VideoTchw, group.SpatialTokens);
        var (logProbs, _) = CompletionLogProbs.Compute(_model, visual, group.PromptIds, group.Video.Grid, group.Video.SecondPerGridT,
            group.CompletionIds, temperature);
        return logProbs.MoveToOuterDisposeScope();
    }

    public void Dispose() => _model.Dispose();
}
