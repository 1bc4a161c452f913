using SpatialMllm.Research.Verification;

namespace SpatialMllm.Research.Tests.Training.Grpo;

/// <summary>
/// One GRPO step on the tiny reference fixture against TRL's loss computed by the reference model
/// (<see cref="GrpoFixtureVerifier"/>; tests/fixtures/grpo, made by <c>environment/fixtures/make_grpo_fixture.py</c> on the
/// GPU machine). GrpoFixtureGpuTests runs the same on CUDA.
/// </summary>
public class GrpoFixtureTests(ITestOutputHelper output)
{
    static string FixtureFolder => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "grpo");

    [Fact]
    public void One_grpo_step_matches_TRLs_loss_and_gradients_on_the_reference_model()
    {
        var checks = GrpoFixtureVerifier.Verify(FixtureFolder, TestPaths.TinyFixture);
        foreach (var c in checks) output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} {(c.Passed ? "pass" : "FAIL")}");
        Assert.Contains(checks, c => c.Name == "grpo.grad.model.embed_tokens.weight");
        Assert.Contains(checks, c => c.Name == "dr_grpo.loss");
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: {c.MaxAbsError:E2} > {c.Tolerance:E0}"));
    }
}
