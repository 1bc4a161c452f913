using System.Diagnostics;
using System.Globalization;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// An evaluation spread over worker processes, one per GPU: each is the same program answering one shard
/// (<c>--shard i/N --device cuda:i</c>) into its own results file, which the parent merges. Workers die with their parent
/// (parent-death signal); a cancellation of the parent is passed on as SIGTERM, so each worker finishes its batch of
/// answers in progress, flushes and exits.
/// </summary>
internal static class EvaluationWorkers
{
    /// <summary>Environment variable that marks a worker process and names its parent (so it can die with it).</summary>
    public const string ParentPidVariable = "SPATIAL_MLLM_PARENT_PID";

    /// <summary>In a worker started by <see cref="Run"/>: ties this process's life to its parent's and answers true;
    /// false in a process nobody started as a worker (e.g. a shard of a cluster job).</summary>
    public static bool JoinParent()
    {
        if (Environment.GetEnvironmentVariable(ParentPidVariable) is not { } parentPid) return false;
        if (!PosixProcess.DieWithParent(int.Parse(parentPid, CultureInfo.InvariantCulture)))
            throw new InvalidOperationException("the parent evaluate process is gone; this worker stops.");
        return true;
    }

    /// <summary>GPUs this process can see; 0 when libtorch has no CUDA (the CPU build) or cannot load.</summary>
    public static int VisibleGpus()
    {
        try { return TorchSharp.torch.cuda.is_available() ? TorchSharp.torch.cuda.device_count() : 0; }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException) { return 0; }
    }

    /// <summary>The results file of worker <paramref name="shard"/>, beside <paramref name="resultsPath"/>.</summary>
    public static string ShardPath(string resultsPath, Shard shard) =>
        $"{Path.ChangeExtension(resultsPath, null)}.shard-{shard.Index}-of-{shard.Count}.jsonl";

    /// <summary>A worker's results file and its sidecars (lock, manifest, skipped list), those that exist.</summary>
    public static IEnumerable<string> Files(string shardPath) =>
        new[] { shardPath, ResultsFileLock.LockPathFor(shardPath), ResultsManifest.PathFor(shardPath), SkippedQuestions.PathFor(shardPath) }.Where(File.Exists);

    /// <summary>Worker files an earlier, interrupted run left beside <paramref name="resultsPath"/> (any worker count).</summary>
    public static IReadOnlyList<string> EarlierFiles(string resultsPath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(resultsPath))!;
        string stem = Path.GetFileNameWithoutExtension(resultsPath);
        return [.. Directory.EnumerateFiles(folder, $"{stem}.shard-*-of-*.jsonl").SelectMany(Files)];
    }

    /// <summary>
    /// Starts <paramref name="count"/> workers (<paramref name="command"/> gives each one's command line; on
    /// <c>cuda:i</c> round the <paramref name="gpus"/>, else the CPU), shows their output lines on <paramref name="display"/>,
    /// and returns how many failed (or were stopped). (The kernel ties the parent-death signal to the thread that started
    /// the worker: this one, which waits below until every worker has exited.)
    /// </summary>
    public static int Run(int count, int gpus, Func<Shard, string, ProcessStartInfo> command, IEvaluationDisplay display, CancellationToken cancel)
    {
        var processes = new List<Process>();
        for (int i = 0; i < count; i++)
        {
            var start = command(new Shard(i, count), gpus > 0 ? $"cuda:{i % gpus}" : "cpu");
            start.RedirectStandardOutput = start.RedirectStandardError = true;
            start.UseShellExecute = false;
            start.Environment[ParentPidVariable] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            var process = new Process { StartInfo = start };
            int part = i;
            process.OutputDataReceived += (_, e) => { if (e.Data != null) display.WorkerLine(part, e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data != null) display.WorkerLine(part, e.Data); };
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            processes.Add(process);
        }
        using (cancel.Register(() => { foreach (var p in processes) if (!p.HasExited) PosixProcess.Signal(p.Id, PosixProcess.SigTerm); }))
            foreach (var p in processes) p.WaitForExit();
        int failures = processes.Count(p => p.ExitCode != 0);
        foreach (var p in processes) p.Dispose();
        return failures;
    }
}
