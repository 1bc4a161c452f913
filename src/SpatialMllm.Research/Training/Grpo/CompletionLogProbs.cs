using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>
/// TRL's <c>_get_per_token_logps_and_entropies</c> on our model: one forward over prompt + completion for each of a
/// question's completions (batch [K, P + T], the completions right-padded: attention is causal, so no real token sees the
/// padding), the logits of the positions that predict the completion tokens divided by the sampling temperature,
/// log_softmax (float32) at the completion tokens. With autograd enabled the log-probabilities carry the graph (the policy
/// in the loss); under <c>torch.no_grad()</c> they are the old policy's or the reference's.
/// <para>The prompt is embedded with the visual tokens in place of its video pads; completion tokens are embedded as
/// plain tokens and positioned one after another from the prompt's end (text positions after the video, as generation
/// places them), whatever tokens were sampled.</para>
/// </summary>
public static class CompletionLogProbs
{
    /// <param name="visualTokens">[merged tokens, hidden]: the fused video tokens (with a graph when the merger or
    /// connector train).</param>
    /// <param name="promptIds">The prompt, video pads expanded.</param>
    /// <param name="completionIds">[K, T] int64, right-padded.</param>
    /// <returns>Per-token log-probabilities [K, T] float32 and the entropies [K, T] (no graph).</returns>
    public static (Tensor LogProbs, Tensor Entropies) Compute(SpatialMllmModel model, Tensor visualTokens, IReadOnlyList<int> promptIds,
        GridThw grid, double secondPerGridT, Tensor completionIds, double temperature)
    {
        using var scope = torch.NewDisposeScope();
        var device = model.Device;
        long k = completionIds.shape[0], t = completionIds.shape[1], p = promptIds.Count;
        var prompt = torch.tensor(promptIds.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);
        var (promptPositions, deltas) = RopeIndex.Compute(prompt, model.Config.Tokens, model.Config.Vision, grid.ToTensor().to(device),
            torch.tensor(new[] { secondPerGridT }, device: device));
        var completion = completionIds.to(ScalarType.Int64, device);
        var embeds = torch.cat(
        [
            model.Language.EmbedWithVisualTokens(prompt, visualTokens, model.Config.Tokens.VideoTokenId).expand(k, p, -1),
            model.model.EmbedTokens(completion),
        ], 1);
        long next = p + deltas[0].item<long>();
        var positions = torch.cat(
        [
            promptPositions.expand(3, k, p),
            torch.arange(next, next + t, ScalarType.Int64, device).view(1, 1, t).expand(3, k, t),
        ], 2);
        var hidden = model.model.forward(embeds, positions);                  // [K, P + T, hidden]
        // Position P − 1 + j predicts completion token j.
        var logits = nn.functional.linear(hidden.narrow(1, p - 1, t), model.lm_head.weight).to(ScalarType.Float32) / temperature;
        var logProbs = GrpoLoss.SelectiveLogSoftmax(logits, completion);
        Tensor entropies;
        using (torch.no_grad()) entropies = GrpoLoss.Entropy(logits);
        return (logProbs.MoveToOuterDisposeScope(), entropies.MoveToOuterDisposeScope());
    }
}
