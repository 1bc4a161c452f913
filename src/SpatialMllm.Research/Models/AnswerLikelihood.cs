namespace SpatialMllm.Research.Models;

/// <summary>
/// How likely the model finds one candidate answer (<see cref="SpatialMllmModel.LogLikelihood(VideoFeatures, string, IReadOnlyList{string}, AnswerOptions?)"/>):
/// each of its tokens' log-probability after the prompt and the tokens before it (natural log, float32 log_softmax of
/// the raw logits).
/// </summary>
/// <param name="Text">The candidate as given; null when it was given as token ids.</param>
/// <param name="TokenIds">Its tokens, in order.</param>
/// <param name="TokenLogProbs">log p(token | prompt, the tokens before it), one per token.</param>
public sealed record AnswerLikelihood(string? Text, IReadOnlyList<int> TokenIds, IReadOnlyList<double> TokenLogProbs)
{
    /// <summary>The candidate's log-likelihood: the sum of its tokens' log-probabilities (what ranks multiple choices).</summary>
    public double LogProb => TokenLogProbs.Sum();

    public int TokenCount => TokenIds.Count;

    /// <summary><see cref="LogProb"/> per token, for comparing candidates of different lengths.</summary>
    public double MeanLogProb => LogProb / TokenCount;
}
