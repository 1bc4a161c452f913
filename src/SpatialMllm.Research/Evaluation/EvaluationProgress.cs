namespace SpatialMllm.Research.Evaluation;

/// <summary>Where a run stands: answered in this run, already done before it, and the total for this shard; what it is doing
/// when that is not answering (null: answering <paramref name="CurrentVideo"/>, or done).</summary>
internal sealed record EvaluationProgress(int AnsweredNow, int DoneBefore, int Total, TimeSpan Elapsed, string? CurrentVideo, string? Activity = null);
