using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>
/// TRL's <c>_get_per_token_logps_and_entropies</c> on our model: one forward over prompt + completion for each of a
/// question's completions (batch [K, P + T], the completions right-padded: attention is causal, so no real token sees the
/// padding; or, the fast path, the prompt once and the K completions after its keys and values), the logits of the
/// positions that predict the completion tokens divided by the sampling temperature, log_softmax (float32) at the
/// completion tokens. With autograd enabled the log-probabilities carry the graph (the policy
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
    /// <param name="sharePrompt">Run the prompt once for all K completions (its keys and values, with their graph, seen by
    /// every completion: <see cref="Qwen2KvCache.KeepingGraph"/>) instead of K times as TRL does; the same log-probabilities
    /// and gradients (a test holds them equal), about K times less decoder work on a long video prompt. Gradient
    /// checkpointing does not apply to that forward (it recomputes layers without a cache).</param>
    /// <returns>Per-token log-probabilities [K, T] float32 and the entropies [K, T] (no graph).</returns>
    public static (Tensor LogProbs, Tensor Entropies) Compute(SpatialMllmModel model, Tensor visualTokens, IReadOnlyList<int> promptIds,
        GridThw grid, double secondPerGridT, Tensor completionIds, double temperature, bool sharePrompt = false)
    {
        using var scope = torch.NewDisposeScope();
        var device = model.Device;
        long k = completionIds.shape[0], t = completionIds.shape[1], p = promptIds.Count;
        var prompt = torch.tensor(promptIds.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);
        var (promptPositions, deltas) = RopeIndex.Compute(prompt, model.Config.Tokens, model.Config.Vision, grid.ToTensor().to(device),
            torch.tensor(new[] { secondPerGridT }, device: device));
        var completion = completionIds.to(ScalarType.Int64, device);
        var promptEmbeds = model.Language.EmbedWithVisualTokens(prompt, visualTokens, model.Config.Tokens.VideoTokenId);   // [1, P, hidden]
        long next = p + deltas[0].item<long>();
        var completionPositions = torch.arange(next, next + t, ScalarType.Int64, device).view(1, 1, t).expand(3, k, t);
        Tensor predicting;                                                    // [K, T, hidden]: the states that predict the completion tokens
        if (sharePrompt)
        {
            using var cache = Qwen2KvCache.KeepingGraph(model.Config.Text.NumHiddenLayers);
            var promptHidden = model.model.forward(promptEmbeds, promptPositions, cache);                   // [1, P, hidden]
            cache.ExpandRows(k);
            var completionHidden = model.model.forward(model.model.EmbedTokens(completion), completionPositions, cache);   // [K, T, hidden]
            // The prompt's last state predicts completion token 0, completion token j − 1's predicts token j.
            predicting = torch.cat([promptHidden.narrow(1, p - 1, 1).expand(k, 1, -1), completionHidden.narrow(1, 0, t - 1)], 1);
        }
        else
        {
            var embeds = torch.cat([promptEmbeds.expand(k, p, -1), model.model.EmbedTokens(completion)], 1);
            var positions = torch.cat([promptPositions.expand(3, k, p), completionPositions], 2);
            var hidden = model.model.forward(embeds, positions);              // [K, P + T, hidden]
            predicting = hidden.narrow(1, p - 1, t);                          // position P − 1 + j predicts completion token j
        }
        var logits = nn.functional.linear(predicting, model.lm_head.weight).to(ScalarType.Float32) / temperature;
        var logProbs = GrpoLoss.SelectiveLogSoftmax(logits, completion);
        Tensor entropies;
        using (torch.no_grad()) entropies = GrpoLoss.Entropy(logits);
        return (logProbs.MoveToOuterDisposeScope(), entropies.MoveToOuterDisposeScope());
    }
}
