namespace SpatialMllm.Research.Evaluation;

/// <summary>What a run did: answers written now, and the questions skipped (with <see cref="OnVideoError.Skip"/>).</summary>
internal sealed record EvaluationSummary(int Answered, IReadOnlyList<SkippedQuestion> Skipped);
