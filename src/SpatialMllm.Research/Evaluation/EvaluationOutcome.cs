namespace SpatialMllm.Research.Evaluation;

/// <summary>How an <see cref="EvaluationJob"/> ended (failures are exceptions whose message says what to do).</summary>
internal abstract record EvaluationOutcome
{
    /// <summary>Every question answered (or skipped, <see cref="OnVideoError.Skip"/>) and the results scored; the metrics
    /// are in <paramref name="MetricsPath"/>.</summary>
    public sealed record Scored(BenchmarkScore Score, string MetricsPath, IReadOnlyList<SkippedQuestion> Skipped) : EvaluationOutcome;

    /// <summary>A <c>--shard</c> run answered its part into <paramref name="ResultsPath"/>; the shards are merged and scored later.</summary>
    public sealed record ShardAnswered(Shard Shard, string ResultsPath) : EvaluationOutcome;

    /// <summary>Stopped after the batch in progress; <paramref name="Message"/> says which files keep every finished answer
    /// and how to resume.</summary>
    public sealed record Interrupted(string Message) : EvaluationOutcome;
}
