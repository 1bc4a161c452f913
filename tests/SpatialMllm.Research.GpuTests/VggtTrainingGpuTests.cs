using SpatialMllm.Research.Verification;
using TorchSharp;

namespace SpatialMllm.Research.GpuTests;

/// <summary>
/// The trainable-VGGT gradient fixture (tests/fixtures/vggt-train, made by the reference with
/// environment/fixtures/make_vggt_train_fixture.py) on CUDA: the SFT gradients of every VGGT parameter with
/// tune_mm_spatial_encoder, plain and with gradient checkpointing, and VGGT's training losses with their gradients.
/// </summary>
public sealed class VggtTrainingGpuTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sft_and_vggt_loss_gradients_match_the_reference_on_cuda(bool gradientCheckpointing)
    {
        var device = Gpu.RequireCuda();
        string root = RepoRoot(), fixture = Path.Combine(root, "tests", "fixtures", "vggt-train");
        string shared = Environment.GetEnvironmentVariable("SPATIAL_MLLM_SHARED") is { Length: > 0 } s ? s : Path.Combine(root, "..", "shared");
        string tiny = Path.GetFullPath(Path.Combine(shared, "fixtures", "spatial-mllm-tiny"));
        Assert.SkipUnless(File.Exists(Path.Combine(fixture, VggtTrainingFixtureVerifier.FileName)),
            $"{fixture} has no {VggtTrainingFixtureVerifier.FileName} yet (environment/fixtures/make_vggt_train_fixture.py makes it).");
        Assert.SkipUnless(File.Exists(Path.Combine(tiny, "io.safetensors")), $"the tiny fixture is not at {tiny} (set SPATIAL_MLLM_SHARED).");
        var checks = VggtTrainingFixtureVerifier.Verify(fixture, tiny, device, gradientCheckpointing);
        foreach (var c in checks) output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} rel {c.MaxRelError:E2} {(c.Passed ? "pass" : "FAIL " + c.Note)}");
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: {c.MaxRelError:E2} {c.Note}"));
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SpatialMllm.Research.sln"))) return dir.FullName;
        throw new InvalidOperationException("SpatialMllm.Research.sln not found above " + AppContext.BaseDirectory);
    }
}
