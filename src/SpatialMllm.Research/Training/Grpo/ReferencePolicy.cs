using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Processing;
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
/// <param name="vggtFrozen">No VGGT parameter or adapter trains, so the rollout's VGGT tokens are the base model's too.</param>
public sealed class AdaptersOffReference(SpatialMllmModel model, LoraModel lora, bool vggtFrozen) : IReferencePolicy
{
    public Tensor PerTokenLogProbs(GrpoGroup group, double temperature)
    {
        // The encoders too: adapters there are part of the policy, not of the reference.
        using var off = lora.disable_adapter();
        return FrozenCopyReference.LogProbsWithoutGraph(model, group, temperature, vggtFrozen);
    }

    /// <summary>The model is the policy's: nothing of its own to release.</summary>
    public void Dispose() { }
}

/// <summary>A second copy of the base model, loaded once and never trained.</summary>
public sealed class FrozenCopyReference : IReferencePolicy
{
    readonly SpatialMllmModel _model;
    readonly bool _vggtFrozen;

    FrozenCopyReference(SpatialMllmModel model, bool vggtFrozen)
    {
        _model = model;
        _vggtFrozen = vggtFrozen;
        foreach (var (_, module) in model.Components())
            foreach (var parameter in module.parameters()) parameter.requires_grad = false;
    }

    /// <summary>Loads the base model's folder again (same device and dtype as the policy).</summary>
    /// <param name="vggtFrozen">The policy's VGGT does not train, so its tokens are the base model's too.</param>
    public static FrozenCopyReference FrozenCopy(string folder, Device device, ScalarType dtype, bool vggtFrozen) =>
        new(SpatialMllmModel.Load(folder, device, dtype), vggtFrozen);

    /// <summary>Freezes <paramref name="model"/> (a copy of the base model made by the caller) and takes it over.</summary>
    public static FrozenCopyReference Of(SpatialMllmModel model, bool vggtFrozen) => new(model, vggtFrozen);

    public Tensor PerTokenLogProbs(GrpoGroup group, double temperature) => LogProbsWithoutGraph(_model, group, temperature, _vggtFrozen);

    /// <summary><see cref="PerTokenLogProbs(GrpoGroup, double)"/> from a rollout's parts (the benchmark's, which has no
    /// video file to make a group from).</summary>
    internal Tensor PerTokenLogProbs(Tensor pixelValues, GridThw grid, Tensor videoTchw, double secondPerGridT, Tensor? spatialTokens,
        IReadOnlyList<int> promptIds, Tensor completionIds, double temperature) =>
        LogProbsWithoutGraph(_model, pixelValues, grid, videoTchw, secondPerGridT, _vggtFrozen ? spatialTokens : null, promptIds, completionIds, temperature);

    /// <summary><paramref name="model"/>'s per-token log-probabilities [K, T] of the group's completions, without a graph:
    /// its own encoders over the group's frames, reusing the rollout's VGGT tokens only when <paramref name="vggtFrozen"/>
    /// (a trained VGGT's tokens are the policy's, not the reference's).</summary>
    internal static Tensor LogProbsWithoutGraph(SpatialMllmModel model, GrpoGroup group, double temperature, bool vggtFrozen) =>
        LogProbsWithoutGraph(model, group.Video.PixelValuesVideos, group.Video.Grid, group.Video.VideoTchw, group.Video.SecondPerGridT,
            vggtFrozen ? group.SpatialTokens : null, group.PromptIds, group.CompletionIds, temperature);

    static Tensor LogProbsWithoutGraph(SpatialMllmModel model, Tensor pixelValues, GridThw grid, Tensor videoTchw, double secondPerGridT,
        Tensor? spatialTokens, IReadOnlyList<int> promptIds, Tensor completionIds, double temperature)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var visual = model.EncodeForTraining(pixelValues, grid, videoTchw, spatialTokens);
        var (logProbs, _) = CompletionLogProbs.Compute(model, visual, promptIds, grid, secondPerGridT, completionIds, temperature, sharePrompt: true);
        return logProbs.MoveToOuterDisposeScope();
    }

    public void Dispose() => _model.Dispose();
}
