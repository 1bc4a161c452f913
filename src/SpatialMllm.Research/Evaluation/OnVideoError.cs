namespace SpatialMllm.Research.Evaluation;

/// <summary>What to do when a video cannot be read.</summary>
internal enum OnVideoError
{
    /// <summary>Stop the run (the default): the error names the file.</summary>
    Stop,
    /// <summary>Record the video's questions with the reason in <c>{results}.skipped.jsonl</c> and go on; they are
    /// retried on the next run.</summary>
    Skip,
}
