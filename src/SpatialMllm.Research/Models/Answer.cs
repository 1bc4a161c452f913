using SpatialMllm.Research.Models.Qwen;

namespace SpatialMllm.Research.Models;

/// <summary>An answer with what it cost and, when asked for, the scores each of its tokens was chosen from.</summary>
/// <param name="GeneratedIds">The tokens generated, the final eos included.</param>
/// <param name="Scores">Per generated token (in step order), the processed scores over the vocabulary that token was
/// chosen from: the raw logits after the repetition penalty and, when sampling, temperature, top-k and top-p (−∞ where a
/// token was filtered out) — transformers' <c>generate(output_scores=True)</c> scores, asked for with
/// <see cref="GenerationOptions.ReturnStepScores"/>; null unless asked. Plain float arrays (nothing to dispose): a step
/// holds the vocabulary's 151,936 floats for Qwen2.5-VL, 594 KiB, so a 100-token answer keeps 58 MiB.</param>
/// <param name="Logits">Per generated token, the raw logits (float32) before any processing — transformers'
/// <c>output_logits</c>, asked for with <see cref="GenerationOptions.ReturnStepLogits"/>; null unless asked. Same size
/// as <paramref name="Scores"/>.</param>
public sealed record Answer(string Text, IReadOnlyList<int> GeneratedIds, int PromptTokens, int VideoTokens,
    IReadOnlyList<StageTiming> Timings, GenerationStopReason StopReason,
    IReadOnlyList<float[]>? Scores = null, IReadOnlyList<float[]>? Logits = null)
{
    public double TotalMilliseconds => Timings.Sum(t => t.Milliseconds);
}
