namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// Where an evaluation's progress and messages are shown, over one process (part 0) or one part per worker; the program
/// that runs the evaluation decides how (a live terminal region, plain lines, events for a parent process). Shown until
/// disposed.
/// </summary>
internal interface IEvaluationDisplay : IDisposable
{
    /// <summary>Messages, shown beside the progress.</summary>
    TextWriter Log { get; }

    /// <summary>Part <paramref name="part"/> is doing something that is not in an <see cref="EvaluationProgress"/> (e.g. loading the model).</summary>
    void SetActivity(int part, string activity);

    void Report(int part, EvaluationProgress progress);

    /// <summary>A line that worker <paramref name="part"/> wrote (standard output or error): its progress, or a message.</summary>
    void WorkerLine(int part, string line);
}
