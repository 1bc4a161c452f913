using System.Text.Json;
using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.GpuTests;

/// <summary>
/// What every GPU test needs: CUDA (else the test skips with the reason), the full-size fixtures that
/// <c>environment/gpu-tests.sh</c> makes with the reference on the GPU machine, and a report file for the tables the
/// tests print (committed under <c>benchmarks/results/</c>).
/// </summary>
internal static class Gpu
{
    /// <summary>Skips the calling test unless CUDA is there; TF32 is off afterwards (see <see cref="TorchRuntime"/>).</summary>
    public static Device RequireCuda()
    {
        TorchRuntime.EnsureLoaded();
        Assert.SkipUnless(torch.cuda.is_available(), "CUDA is not available: the GPU tests run on the GPU machine (environment/gpu-tests.sh).");
        return torch.CUDA;
    }

    /// <summary>The full-size fixture folders ($SPATIAL_MLLM_FULLSIZE_FIXTURES, ':'-separated); skips when none.</summary>
    public static IReadOnlyList<string> RequireFullSizeFixtures()
    {
        RequireCuda();
        var folders = (Environment.GetEnvironmentVariable("SPATIAL_MLLM_FULLSIZE_FIXTURES") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.SkipWhen(folders.Length == 0,
            "SPATIAL_MLLM_FULLSIZE_FIXTURES names no fixture: environment/gpu-tests.sh makes them with ../shared/tools/make_fullsize_fixture.py.");
        foreach (var folder in folders)
            Assert.True(File.Exists(Path.Combine(folder, "io.safetensors")), $"{folder} has no io.safetensors");
        return folders;
    }

    /// <summary>
    /// The reference's own errors for a fixture, from <c>reference-noise.json</c> beside it (gpu-tests.sh writes it from
    /// the generator's <c>--noise-floor</c> lines): section ("fp32_math" or "bf16") → tensor → max relative error.
    /// </summary>
    public static IReadOnlyDictionary<string, double> ReferenceNoise(string fixture, string section)
    {
        string path = Path.Combine(fixture, "reference-noise.json");
        if (!File.Exists(path)) return new Dictionary<string, double>();
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        return json.RootElement.TryGetProperty(section, out var tensors)
            ? tensors.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble())
            : new Dictionary<string, double>();
    }

    /// <summary>tests/fixtures/<paramref name="name"/> (reference fixtures committed with the repository); skips when it
    /// holds none.</summary>
    public static string RepoFixture(string name)
    {
        string folder = Path.Combine(RepoRoot(), "tests", "fixtures", name);
        Assert.SkipUnless(Directory.Exists(folder) && Directory.EnumerateFiles(folder, "*.safetensors").Any(),
            $"{folder} holds no fixture yet (environment/gpu-fixtures.sh makes it).");
        return folder;
    }

    /// <summary>The tiny Spatial-MLLM fixture, $SPATIAL_MLLM_SHARED/fixtures/spatial-mllm-tiny (gpu-tests.sh points it at
    /// the copy environment/gpu-pack.sh carries; default ../shared beside the repository); skips when it is not there.</summary>
    public static string TinyFixture()
    {
        string shared = Environment.GetEnvironmentVariable("SPATIAL_MLLM_SHARED") is { Length: > 0 } s ? s : Path.Combine(RepoRoot(), "..", "shared");
        string tiny = Path.GetFullPath(Path.Combine(shared, "fixtures", "spatial-mllm-tiny"));
        Assert.SkipUnless(File.Exists(Path.Combine(tiny, "model.safetensors")), $"the tiny fixture is not at {tiny} (set SPATIAL_MLLM_SHARED).");
        return tiny;
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SpatialMllm.Research.sln"))) return dir.FullName;
        throw new InvalidOperationException("SpatialMllm.Research.sln not found above " + AppContext.BaseDirectory);
    }

    static readonly object ReportLock = new();

    /// <summary>Appends a section to $GPU_TESTS_REPORT (when set) and prints it (xunit v3 does not capture the console).</summary>
    public static void Report(string title, IEnumerable<string> lines)
    {
        string text = $"### {title}\n\n{string.Join("\n", lines)}\n\n";
        Console.Write(text);
        if (Environment.GetEnvironmentVariable("GPU_TESTS_REPORT") is { Length: > 0 } path)
            lock (ReportLock) File.AppendAllText(path, text);
    }

    /// <summary>
    /// The largest difference in units in the last place of <paramref name="mantissaBits"/>-bit floats (bf16: 7), taken
    /// at the larger magnitude of each pair, so 1 means "adjacent representable values".
    /// </summary>
    public static double MaxUlps(Tensor expected, Tensor actual, int mantissaBits)
    {
        using var scope = torch.NewDisposeScope();
        var a = actual.to(ScalarType.Float64, CPU);
        var e = expected.to(ScalarType.Float64, CPU);
        var magnitude = torch.maximum(a.abs(), e.abs()).clamp_min(1e-30);
        var ulp = torch.exp2(torch.floor(torch.log2(magnitude)) - mantissaBits);
        return ((a - e).abs() / ulp).max().item<double>();
    }

    /// <summary>max |a − b| in float64.</summary>
    public static double MaxAbs(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        return (a.to(ScalarType.Float64, CPU) - b.to(ScalarType.Float64, CPU)).abs().max().item<double>();
    }
}
