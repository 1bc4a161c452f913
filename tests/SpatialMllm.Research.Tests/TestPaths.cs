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

    /// <summary>A fresh empty folder under the test run's temp folder.</summary>
    public static string NewTempDir(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "spatial-mllm-tests", $"{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SpatialMllm.Research.sln"))) return dir.FullName;
        throw new InvalidOperationException("SpatialMllm.Research.sln not found above " + AppContext.BaseDirectory);
    }
}
