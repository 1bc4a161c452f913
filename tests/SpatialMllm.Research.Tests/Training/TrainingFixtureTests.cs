using SpatialMllm.Research.Training;
using SpatialMllm.Research.Verification;

namespace SpatialMllm.Research.Tests.Training;

public class TrainingFixtureTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Two_sft_steps_match_the_reference_losses_gradients_and_adamw_deltas(bool gradientCheckpointing)
    {
        var checks = TrainingFixtureVerifier.Verify(TestPaths.TinyFixture, gradientCheckpointing: gradientCheckpointing);
        foreach (var c in checks) output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} rel {c.MaxRelError:E2} {(c.Passed ? "pass" : "FAIL " + c.Note)}");
        // trainable_set, 2 × (loss, grad_norm), 36 gradients, 36 deltas, the schedule.
        Assert.Equal(1 + 4 + 36 + 36 + 1, checks.Count);
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: {c.MaxRelError:E2} {c.Note}"));
    }

    [Fact]
    public void Cosine_schedule_warms_up_linearly_then_decays_to_zero()
    {
        var s = CosineSchedule.FromRatio(100, 0.03);
        Assert.Equal(3, s.WarmupSteps);
        Assert.Equal([0.0, 1.0 / 3, 2.0 / 3, 1.0], Enumerable.Range(0, 4).Select(s.Factor));
        Assert.Equal(0.5, new CosineSchedule(12, 2).Factor(7), 12); // halfway through the decay
        Assert.True(s.Factor(99) is > 0 and < 0.001);
    }

    [Fact]
    public void Weight_decay_skips_biases_only_as_the_seeds_create_optimizer_does()
    {
        Assert.False(TrainableSet.DecaysWeight("model.layers.0.self_attn.q_proj.bias"));
        Assert.True(TrainableSet.DecaysWeight("model.layers.0.input_layernorm.weight")); // RMSNorm is not an nn.LayerNorm
        Assert.True(TrainableSet.DecaysWeight("connector.mlp.0.weight"));
    }
}
