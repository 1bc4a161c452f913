using SpatialMllm.Research.Training.Grpo;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training.Grpo;

/// <summary>TRL's GRPO loss on hand-made log-probabilities: each normalisation against the value TRL's formulas give
/// (computed by hand, below), the ratio and clipping, the k3 KL, and the gradient against its analytic form.</summary>
public class GrpoLossTests
{
    // Two completions of three tokens (the second one two tokens long), advantages +1 and −0.5.
    static readonly float[,] LogProbs = { { -1.0f, -2.0f, -0.5f }, { -0.3f, -1.2f, -0.8f } };
    // Ratios exp(logp − old): [1.4918, 0.8187, 1], [1, 0.7408, 1.1052]: token (0, 0) above 1 + ε_high with A > 0, token (1, 1)
    // below 1 − ε with A < 0: one of five active tokens clipped on each side.
    static readonly float[,] Old = { { -1.4f, -1.8f, -0.5f }, { -0.3f, -0.9f, -0.9f } };
    static readonly float[,] Ref = { { -1.2f, -2.1f, -0.4f }, { -0.2f, -1.3f, -0.7f } };
    static readonly float[,] Mask = { { 1, 1, 1 }, { 1, 1, 0 } };
    static readonly float[] Advantages = [1.0f, -0.5f];

    static GrpoConfig Config(string lossType, double beta = 0.1) =>
        new() { LossType = lossType, Beta = beta, Epsilon = 0.2, EpsilonHigh = 0.28, MaxCompletionLength = 4 };

    /// <summary>
    /// Per token (TRL): r = exp(logp − old), loss = −min(r·A, clamp(r, 0.8, 1.28)·A) + 0.1·(exp(ref − logp) − (ref − logp) − 1).
    /// S = Σ loss·mask = −2.19485601055. grpo: mean over completions of (Σ_t loss·mask / Σ_t mask) ÷ 2 accumulation steps;
    /// bnpo: S / 5 ÷ 2; dr_grpo: S / (2 completions × max_completion_length 4) ÷ 2; dapo: S / (12 tokens in the rollout batch).
    /// </summary>
    [Theory]
    [InlineData(GrpoLossTypes.Grpo, -0.145362966145)]
    [InlineData(GrpoLossTypes.Bnpo, -0.219485601055)]
    [InlineData(GrpoLossTypes.DrGrpo, -0.137178500659)]
    [InlineData(GrpoLossTypes.Dapo, -0.182904667546)]
    public void Each_loss_type_equals_TRLs_formula_computed_by_hand(string lossType, double expected)
    {
        using var scope = torch.NewDisposeScope();
        var result = GrpoLoss.Compute(torch.tensor(LogProbs), torch.tensor(Mask), torch.tensor(Advantages), Config(lossType),
            torch.tensor(Old), torch.tensor(Ref), gradientAccumulationSteps: 2, numItemsInBatch: 12);
        Assert.Equal(expected, result.Loss.item<float>(), 5);
        // k3 KL's mean over the 5 active tokens; one token clipped on each side.
        Assert.Equal(0.007749485060, result.Kl!.Value, 6);
        Assert.Equal(0.2, result.ClipLow, 6);
        Assert.Equal(0.2, result.ClipHigh, 6);
        Assert.Equal(0.4, result.ClipRegion, 6);
    }

    [Fact]
    public void With_one_update_per_rollout_the_ratio_is_one_and_nothing_is_clipped()
    {
        using var scope = torch.NewDisposeScope();
        var logProbs = torch.tensor(LogProbs).requires_grad_();
        var result = GrpoLoss.Compute(logProbs, torch.tensor(Mask), torch.tensor(Advantages), Config(GrpoLossTypes.Grpo, beta: 0));
        Assert.Equal(0, result.ClipRegion);
        Assert.Null(result.Kl);
        // r = 1 everywhere: loss = −mean_i(A_i) = −(1 − 0.5) / 2.
        Assert.Equal(-0.25, result.Loss.item<float>(), 6);
        // ∂/∂logp of −r·A with r = exp(logp − logp.detach()) is −A: the REINFORCE gradient, spread over each completion's tokens.
        result.Loss.backward();
        var grad = logProbs.grad!.data<float>().ToArray();
        Assert.Equal([-0.5f / 3, -0.5f / 3, -0.5f / 3, 0.25f / 2, 0.25f / 2, 0], grad, new FloatTolerance(1e-6f));
    }

    [Fact]
    public void The_gradient_matches_the_analytic_form()
    {
        using var scope = torch.NewDisposeScope();
        var logProbs = torch.tensor(LogProbs).requires_grad_();
        var config = Config(GrpoLossTypes.Bnpo);
        var result = GrpoLoss.Compute(logProbs, torch.tensor(Mask), torch.tensor(Advantages), config, torch.tensor(Old), torch.tensor(Ref),
            gradientAccumulationSteps: 2);
        result.Loss.backward();
        var grad = logProbs.grad!.data<float>().ToArray();
        // d/dlogp per active token: −r·A where the unclipped term is the minimum (0 where the clipped constant is), plus
        // β·(1 − exp(ref − logp)); bnpo divides by the 5 active tokens and the 2 accumulation steps.
        for (int i = 0; i < 2; i++)
            for (int t = 0; t < 3; t++)
            {
                double r = Math.Exp(LogProbs[i, t] - Old[i, t]), a = Advantages[i];
                double clipped = Math.Clamp(r, 0.8, 1.28);
                double policy = r * a <= clipped * a ? -r * a : 0;
                double kl = 0.1 * (1 - Math.Exp(Ref[i, t] - LogProbs[i, t]));
                double expected = Mask[i, t] * (policy + kl) / 5 / 2;
                Assert.Equal(expected, grad[i * 3 + t], 5);
            }
    }

    [Fact]
    public void Advantages_are_zero_when_every_reward_of_a_group_is_equal()
    {
        var advantages = GrpoAdvantages.Compute([[1.0], [1.0], [1.0], [1.0], [0.0], [1.0], [0.0], [1.0]], [1.0], numGenerations: 4, "group");
        Assert.All(advantages.Advantages.Take(4), a => Assert.Equal(0, a));
        Assert.Equal(0.5, advantages.FracRewardZeroStd);
        // The second group: mean 0.5, Bessel std √(1/3); (r − mean) / (std + 1e-4).
        double expected = 0.5 / (Math.Sqrt(1.0 / 3) + 1e-4);
        Assert.Equal([-expected, expected, -expected, expected], advantages.Advantages.Skip(4), new DoubleTolerance(1e-12));
        Assert.Equal(0.75, advantages.RewardMean, 12);
    }

    [Fact]
    public void Weighted_rewards_skip_functions_without_a_score_and_unscored_completions_get_no_advantage()
    {
        var a = GrpoAdvantages.Compute([[1.0, double.NaN], [0.0, 1.0], [double.NaN, double.NaN], [1.0, 1.0]], [1.0, 0.5], numGenerations: 4, "none");
        Assert.Equal([1.0, 0.5, double.NaN, 1.5], a.Rewards);
        // scale_rewards none: r − nanmean(1, 0.5, 1.5) = r − 1; the unscored completion 0.
        Assert.Equal([0.0, -0.5, 0.0, 0.5], a.Advantages, new DoubleTolerance(1e-12));
        Assert.Equal([2.0 / 3, 1.0], a.FunctionMeans, new DoubleTolerance(1e-12));
    }

    sealed class FloatTolerance(float tolerance) : IEqualityComparer<float>
    {
        public bool Equals(float x, float y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(float obj) => 0;
    }

    sealed class DoubleTolerance(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }
}
