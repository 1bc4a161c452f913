using SpatialMllm.Research.Verification;

namespace SpatialMllm.Research.GpuTests;

/// <summary>
/// The GRPO parity fixture (tests/fixtures/grpo: TRL's loss computed with the reference model, made by
/// environment/fixtures/make_grpo_fixture.py) on CUDA: the policy's log-probs, each loss type's loss, KL and clip
/// fraction, and the gradients, float32, within the SFT fixture's tolerances.
/// </summary>
public sealed class GrpoFixtureGpuTests(ITestOutputHelper output)
{
    [Fact]
    public void One_grpo_step_matches_TRLs_loss_and_gradients_on_cuda()
    {
        var device = Gpu.RequireCuda();
        var checks = GrpoFixtureVerifier.Verify(Gpu.RepoFixture("grpo"), Gpu.TinyFixture(), device);
        foreach (var c in checks) output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} {(c.Passed ? "pass" : "FAIL")}");
        Assert.Contains(checks, c => c.Name == "dr_grpo.loss");
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: {c.MaxAbsError:E2} > {c.Tolerance:E0}"));
    }
}
