using SpatialMllm.Research.Runs;

namespace SpatialMllm.Research.Evaluation;

/// <summary>One writer per results file: an <see cref="OutputLock"/> on <c>{results}.lock</c>.</summary>
internal static class ResultsFileLock
{
    public static string LockPathFor(string resultsPath) => resultsPath + ".lock";

    /// <summary>Takes the lock or throws <see cref="OutputLockedException"/> naming the run that holds it.</summary>
    /// <param name="command">What the holder is doing, for the other run's message (e.g. "evaluate vsibench").</param>
    public static OutputLock Acquire(string resultsPath, string command) =>
        OutputLock.Acquire(LockPathFor(resultsPath), command, resultsPath,
            "Two runs on one results file would interleave their answers: wait for that run to finish, stop it, or pass another --out.");
}
