namespace SpatialMllm.Research.Training.Grpo;

/// <summary>A rollout batch's rewards turned into advantages, with the statistics TRL logs.</summary>
/// <param name="Advantages">One per completion, in the rewards' order.</param>
/// <param name="Rewards">The weighted sum of the reward functions per completion (NaN where every function returned null).</param>
/// <param name="FunctionMeans">Per reward function, the mean over the completions it scored (TRL's rewards/NAME/mean).</param>
/// <param name="FunctionStds">Per reward function, the standard deviation (Bessel-corrected; rewards/NAME/std).</param>
/// <param name="RewardMean">Mean of <paramref name="Rewards"/> (TRL's reward).</param>
/// <param name="RewardStd">Their standard deviation (reward_std).</param>
/// <param name="FracRewardZeroStd">Fraction of completions whose group's rewards are all equal (frac_reward_zero_std).</param>
public sealed record GrpoAdvantages(double[] Advantages, double[] Rewards, double[] FunctionMeans, double[] FunctionStds,
    double RewardMean, double RewardStd, double FracRewardZeroStd)
{
    /// <summary>TRL's epsilon in the denominator of the scaled advantage: (r − mean) / (std + 1e-4).</summary>
    public const double StdEpsilon = 1e-4;

    /// <summary>
    /// TRL's <c>_generate_and_score_completions</c> (multi_objective_aggregation <c>sum_then_normalize</c>): each completion's
    /// reward is the weighted nansum of its functions' rewards (NaN, a function's "no score", is skipped; a completion no
    /// function scored counts as NaN); the advantage is reward − its group's nanmean, divided by (the group's — or with
    /// scale_rewards <c>batch</c> the batch's — Bessel-corrected nanstd + 1e-4) unless scale_rewards is <c>none</c>; NaN
    /// advantages become 0.
    /// </summary>
    /// <param name="rewardsPerFunction">[completion][function], completions grouped by question (numGenerations in a row).</param>
    public static GrpoAdvantages Compute(IReadOnlyList<double[]> rewardsPerFunction, IReadOnlyList<double> weights, int numGenerations, string scaleRewards)
    {
        int n = rewardsPerFunction.Count, functions = weights.Count;
        if (n == 0 || n % numGenerations != 0)
            throw new ArgumentException($"{n} completions do not make whole groups of num_generations {numGenerations}.");
        if (rewardsPerFunction.Any(r => r.Length != functions))
            throw new ArgumentException($"Every completion needs one reward per function ({functions}).");
        var rewards = new double[n];
        for (int i = 0; i < n; i++)
        {
            var row = rewardsPerFunction[i];
            rewards[i] = row.All(double.IsNaN) ? double.NaN : row.Select((r, f) => double.IsNaN(r) ? 0 : r * weights[f]).Sum();
        }
        var groupMean = new double[n];
        var std = new double[n];
        for (int g = 0; g < n / numGenerations; g++)
        {
            var group = rewards.AsSpan(g * numGenerations, numGenerations).ToArray();
            double mean = NanMean(group), groupStd = NanStd(group);
            for (int k = 0; k < numGenerations; k++) { groupMean[g * numGenerations + k] = mean; std[g * numGenerations + k] = groupStd; }
        }
        if (scaleRewards == "batch") Array.Fill(std, n > 1 ? NanStd(rewards) : 0);
        else if (scaleRewards is not ("group" or "none"))
            throw new ArgumentException($"Invalid value for scale_rewards: {scaleRewards}. Must be one of 'batch', 'group', or 'none'.");
        var advantages = new double[n];
        for (int i = 0; i < n; i++)
        {
            double a = rewards[i] - groupMean[i];
            if (scaleRewards != "none") a /= std[i] + StdEpsilon;
            advantages[i] = double.IsNaN(a) ? 0 : a;
        }
        var means = Enumerable.Range(0, functions).Select(f => NanMean([.. rewardsPerFunction.Select(r => r[f])])).ToArray();
        var stds = Enumerable.Range(0, functions).Select(f => NanStd([.. rewardsPerFunction.Select(r => r[f])])).ToArray();
        // torch.isclose(std, 0): |std| ≤ 1e-8 (atol; rtol × 0 adds nothing).
        double zeroStd = std.Count(s => Math.Abs(s) <= 1e-8) / (double)n;
        return new GrpoAdvantages(advantages, rewards, means, stds, NanMean(rewards), NanStd(rewards), zeroStd);
    }

    internal static double NanMean(double[] x)
    {
        var kept = x.Where(v => !double.IsNaN(v)).ToArray();
        return kept.Length == 0 ? double.NaN : kept.Average();
    }

    /// <summary>TRL's <c>nanstd</c>: Bessel-corrected, NaN for fewer than two values.</summary>
    internal static double NanStd(double[] x)
    {
        var kept = x.Where(v => !double.IsNaN(v)).ToArray();
        if (kept.Length < 2) return double.NaN;
        double mean = kept.Average();
        return Math.Sqrt(kept.Sum(v => (v - mean) * (v - mean)) / (kept.Length - 1));
    }
}
