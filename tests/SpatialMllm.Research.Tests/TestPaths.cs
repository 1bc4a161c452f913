namespace SpatialMllm.Research.Tests;

/// <summary>Where the repository and the shared ground truth (../shared beside the clone) are.</summary>
internal static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>The shared folder: $SPATIAL_MLLM_SHARED, else ../shared beside the repository.</summary>
    public static string Shared { get; } =
        Environment.GetEnvironmentVariable("SPATIAL_MLLM_SHARED") is { Length: > 0 } s ? s
        : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    public static string TinyFixture => Path.Combine(Shared, "fixtures", "spatial-mllm-tiny");
    public static string Data => Path.Combine(Shared, "data");

    /// <summary>A fresh empty folder under this test run's temp folder, which is deleted when the run's process exits.</summary>
    public static string NewTempDir(string name)
    {
        string dir = Path.Combine(RunFolder.Value, $"{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>
    /// spatial-mllm-tests/run-PID-GUID: one folder per test process, deleted at its exit; at the start, the folders of
    /// runs whose process has ended (killed before its exit handler ran) are deleted too. Left behind, a suite's
    /// checkpoints, videos and training runs filled a 250 GB disk shared by several sessions within a day.
    /// </summary>
    static readonly Lazy<string> RunFolder = new(() =>
    {
        string root = Path.Combine(Path.GetTempPath(), "spatial-mllm-tests");
        Directory.CreateDirectory(root);
        foreach (string stale in Directory.EnumerateDirectories(root, "run-*"))
            if (!RunIsAlive(Path.GetFileName(stale))) TryDelete(stale);
        string run = Path.Combine(root, $"run-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(run);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(run);
        return run;
    });

    /// <summary>Whether the process named in a run folder's name (run-PID-GUID) is still running.</summary>
    static bool RunIsAlive(string folderName)
    {
        string[] parts = folderName.Split('-');
        if (parts.Length != 3 || !int.TryParse(parts[1], out int pid)) return false;
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    static void TryDelete(string folder)
    {
        try { Directory.Delete(folder, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SpatialMllm.Research.sln"))) return dir.FullName;
        throw new InvalidOperationException("SpatialMllm.Research.sln not found above " + AppContext.BaseDirectory);
    }
}
