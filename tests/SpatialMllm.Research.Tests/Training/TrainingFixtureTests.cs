using SpatialMllm.Research.Verification;
using Xunit.Abstractions;

namespace SpatialMllm.Research.Tests.Training;

public class TrainingFixtureTests(ITestOutputHelper output)
{
    [Fact]
    public void Two_sft_steps_match_the_reference_losses_gradients_and_adamw_deltas()
    {
        var checks = TrainingFixtureVerifier.Verify(TestPaths.TinyFixture);
        foreach (var c in checks) output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} rel {c.MaxRelError:E2} {(c.Passed ? "pass" : "FAIL " + c.Note)}");
        // trainable_set, 2 × (loss, grad_norm), 36 gradients, 36 deltas, the schedule.
        Assert.Equal(1 + 4 + 36 + 36 + 1, checks.Count);
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: {c.MaxRelError:E2} {c.Note}"));
    }
}
