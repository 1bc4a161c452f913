using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>One micro-batch's loss (with its graph) and the metrics TRL logs for it.</summary>
/// <param name="Loss">The scalar to backpropagate, already divided by TRL's normaliser (gradient accumulation steps, or the
/// rollout batch's token count for <c>dapo</c>): the micro-batches' losses add up to the step's.</param>
/// <param name="Kl">Mean k3 KL to the reference over the active tokens; null when beta is 0.</param>
/// <param name="ClipLow">Fraction of active tokens whose ratio fell below 1 − ε with a negative advantage (TRL's clip_ratio/low_mean).</param>
/// <param name="ClipHigh">Fraction above 1 + ε_high with a positive advantage (clip_ratio/high_mean).</param>
/// <param name="ClipRegion">Either (clip_ratio/region_mean).</param>
public sealed record GrpoLossResult(Tensor Loss, double? Kl, double ClipLow, double ClipHigh, double ClipRegion) : IDisposable
{
    public void Dispose() => Loss.Dispose();
}

/// <summary>
/// TRL's <c>GRPOTrainer._compute_loss</c> (token-level importance sampling, no vLLM correction, no entropy masking):
/// ratio = exp(logp − logp_old) (logp_old = logp.detach() when each rollout batch is used once), the clipped objective
/// −min(ratio·A, clip(ratio, 1 − ε, 1 + ε_high)·A) per token, plus β times the k3 estimator of KL(π‖π_ref),
/// exp(ref − logp) − (ref − logp) − 1, then one of TRL's normalisations (<see cref="GrpoLossTypes"/>):
/// <list type="bullet">
/// <item><c>grpo</c>: mean over sequences of Σ_t loss·mask / max(Σ_t mask, 1), ÷ gradient accumulation steps;</item>
/// <item><c>bnpo</c>: Σ loss·mask / max(Σ mask, 1) over the micro-batch, ÷ gradient accumulation steps;</item>
/// <item><c>dr_grpo</c>: Σ loss·mask / (sequences × max_completion_length), ÷ gradient accumulation steps;</item>
/// <item><c>dapo</c>: Σ loss·mask / (max(active tokens of the whole rollout batch, 1) / processes).</item>
/// </list>
/// </summary>
public static class GrpoLoss
{
    /// <param name="perTokenLogps">[B, T] log-probabilities of the completion tokens under the policy, with a graph.</param>
    /// <param name="completionMask">[B, T] 1 for a completion token that counts, 0 for padding (and truncated completions
    /// under mask_truncated_completions).</param>
    /// <param name="advantages">[B] one advantage per completion.</param>
    /// <param name="oldPerTokenLogps">[B, T] under the policy that sampled the completions; null: <paramref name="perTokenLogps"/>
    /// detached (ratio 1, as TRL when num_iterations is 1).</param>
    /// <param name="refPerTokenLogps">[B, T] under the reference; needed when beta ≠ 0.</param>
    /// <param name="gradientAccumulationSteps">Micro-batches per optimizer step (grpo, bnpo, dr_grpo divide by it).</param>
    /// <param name="numItemsInBatch">Active completion tokens of the whole rollout batch over every process (dapo).</param>
    /// <param name="processes">Data-parallel processes (dapo multiplies back by it).</param>
    public static GrpoLossResult Compute(Tensor perTokenLogps, Tensor completionMask, Tensor advantages, GrpoConfig config,
        Tensor? oldPerTokenLogps = null, Tensor? refPerTokenLogps = null, int gradientAccumulationSteps = 1, double numItemsInBatch = 0,
        int processes = 1)
    {
        using var scope = torch.NewDisposeScope();
        if (perTokenLogps.dim() != 2 || !completionMask.shape.SequenceEqual(perTokenLogps.shape) || advantages.dim() != 1 || advantages.shape[0] != perTokenLogps.shape[0])
            throw new ArgumentException($"GRPO loss: per-token log-probs [B, T] {Shape(perTokenLogps)}, mask {Shape(completionMask)} and advantages [B] {Shape(advantages)} do not agree.");
        if (config.Beta != 0 && refPerTokenLogps is null)
            throw new ArgumentException("GRPO loss: beta is not 0, so the reference model's per-token log-probs are needed.");
        var mask = completionMask.to(perTokenLogps.dtype);
        var adv = advantages.to(perTokenLogps.dtype).unsqueeze(1);
        var old = oldPerTokenLogps ?? perTokenLogps.detach();
        var coef1 = torch.exp(perTokenLogps - old);
        double low = 1 - config.Epsilon, high = 1 + config.EpsilonHighOrDefault;
        var coef2 = torch.clamp(coef1, low, high);
        var perTokenLoss = -torch.minimum(coef1 * adv, coef2 * adv);
        Tensor? perTokenKl = null;
        if (config.Beta != 0)
        {
            var delta = refPerTokenLogps! - perTokenLogps;
            perTokenKl = torch.exp(delta) - delta - 1;
            perTokenLoss = perTokenLoss + config.Beta * perTokenKl;
        }
        var maskedSum = (perTokenLoss * mask);
        Tensor loss = config.LossType switch
        {
            GrpoLossTypes.Grpo => (maskedSum.sum(-1) / mask.sum(-1).clamp_min(1.0)).mean() / gradientAccumulationSteps,
            GrpoLossTypes.Bnpo => maskedSum.sum() / mask.sum().clamp_min(1.0) / gradientAccumulationSteps,
            GrpoLossTypes.DrGrpo => maskedSum.sum() / (perTokenLoss.shape[0] * (double)config.MaxCompletionLength) / gradientAccumulationSteps,
            GrpoLossTypes.Dapo => maskedSum.sum() / (Math.Max(numItemsInBatch, 1.0) / processes),
            _ => throw new ArgumentException($"Unknown loss_type '{config.LossType}'; known: {string.Join(", ", GrpoLossTypes.All)}."),
        };

        using var noGrad = torch.no_grad();
        double MaskedMean(Tensor x) => (x * mask).sum().item<float>() / Math.Max(mask.sum().item<float>(), 1.0);
        var lowClipped = coef1.lt(low).logical_and(adv.lt(0)).to(mask.dtype);
        var highClipped = coef1.gt(high).logical_and(adv.gt(0)).to(mask.dtype);
        var region = lowClipped.logical_or(highClipped).to(mask.dtype);
        return new GrpoLossResult(loss.MoveToOuterDisposeScope(), perTokenKl is null ? null : MaskedMean(perTokenKl),
            MaskedMean(lowClipped), MaskedMean(highClipped), MaskedMean(region));
    }

    /// <summary>TRL's <c>selective_log_softmax</c> of logits already divided by the sampling temperature: logits [B, T, V]
    /// (any float type; computed in float32) and token ids [B, T] → log p(token) [B, T] float32.</summary>
    public static Tensor SelectiveLogSoftmax(Tensor logits, Tensor ids)
    {
        using var scope = torch.NewDisposeScope();
        return logits.to(ScalarType.Float32).log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1).MoveToOuterDisposeScope();
    }

    /// <summary>TRL's <c>entropy_from_logits</c>: −Σ p log p over the vocabulary, [B, T, V] → [B, T], float32.</summary>
    public static Tensor Entropy(Tensor logits)
    {
        using var scope = torch.NewDisposeScope();
        var logp = logits.to(ScalarType.Float32).log_softmax(-1);
        return (-(logp.exp() * logp).sum(-1)).MoveToOuterDisposeScope();
    }

    static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}
