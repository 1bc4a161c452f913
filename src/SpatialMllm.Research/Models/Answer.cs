using SpatialMllm.Research.Models.Qwen;

namespace SpatialMllm.Research.Models;

/// <summary>An answer with what it cost.</summary>
public sealed record Answer(string Text, IReadOnlyList<int> GeneratedIds, int PromptTokens, int VideoTokens,
    IReadOnlyList<StageTiming> Timings, GenerationStopReason StopReason)
{
    public double TotalMilliseconds => Timings.Sum(t => t.Milliseconds);
}
