namespace SpatialMllm.Research.Training;

/// <summary>
/// transformers' <c>get_cosine_schedule_with_warmup</c> (lr_scheduler_type "cosine", num_cycles 0.5) as a multiplier of
/// each group's base learning rate: linear warm-up from 0 over <see cref="WarmupSteps"/>, then half a cosine to 0.
/// </summary>
public sealed record CosineSchedule(int TotalSteps, int WarmupSteps)
{
    /// <summary>The Trainer's <c>get_warmup_steps</c>: ceil(total × warmup_ratio).</summary>
    public static CosineSchedule FromRatio(int totalSteps, double warmupRatio) =>
        new(totalSteps, (int)Math.Ceiling(totalSteps * warmupRatio));

    /// <summary>The multiplier at optimizer step <paramref name="step"/> (0-based: the lr the step-th update uses).</summary>
    public double Factor(int step)
    {
        if (step < WarmupSteps) return (double)step / Math.Max(1, WarmupSteps);
        double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
        return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * 0.5 * 2.0 * progress)));
    }
}
