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
        string fixture = Gpu.RepoFixture("vggt-train"), tiny = Gpu.TinyFixture();
        var checks = VggtTrainingFixtureVerifier.Verify(fixture, tiny, device, gradientCheckpointing);
        foreach (var c in checks) output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} rel {c.MaxRelError:E2} {(c.Passed ? "pass" : "FAIL " + c.Note)}");
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: {c.MaxRelError:E2} {c.Note}"));
    }
}
