using System.Globalization;
using System.Reflection;
using System.Text.Json.Serialization;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>
/// GRPO's own settings, named and defaulted as TRL's <c>GRPOConfig</c> (trl/trainer/grpo_config.py): JSON keys and
/// <c>--flags</c> of <c>spatial-mllm train --method grpo</c>. The optimizer, schedule, steps and data settings are the
/// <see cref="TrainingArguments"/> SFT uses, with GRPOConfig's defaults where TRL changes transformers' (learning_rate
/// 1e-6, gradient_checkpointing on: <see cref="DefaultTrainingArguments"/>).
/// <para>A micro-batch is one question's <see cref="NumGenerations"/> completions (TRL's per_device_train_batch_size =
/// num_generations), all sampled from one encoded video and one shared prefix. One rollout ("generation") batch is
/// <c>gradient_accumulation_steps</c> questions; it is used for <see cref="NumIterations"/> optimizer steps (TRL's
/// steps_per_generation = gradient_accumulation_steps).</para>
/// </summary>
public sealed record GrpoConfig
{
    /// <summary>Completions sampled per question (the group, G in the paper).</summary>
    [JsonPropertyName("num_generations")] public int NumGenerations { get; init; } = 8;
    /// <summary>Most tokens a completion may have; a completion stops at eos or here.</summary>
    [JsonPropertyName("max_completion_length")] public int MaxCompletionLength { get; init; } = 512;
    [JsonPropertyName("temperature")] public double Temperature { get; init; } = 1.0;
    [JsonPropertyName("top_p")] public double TopP { get; init; } = 1.0;
    /// <summary>0: no top-k filtering.</summary>
    [JsonPropertyName("top_k")] public int TopK { get; init; }
    [JsonPropertyName("repetition_penalty")] public double RepetitionPenalty { get; init; } = 1.0;
    /// <summary>KL coefficient; 0 (TRL's default): no reference model is loaded.</summary>
    [JsonPropertyName("beta")] public double Beta { get; init; }
    /// <summary>Policy updates per rollout batch (μ).</summary>
    [JsonPropertyName("num_iterations")] public int NumIterations { get; init; } = 1;
    /// <summary>Lower clipping bound: ratio ≥ 1 − epsilon.</summary>
    [JsonPropertyName("epsilon")] public double Epsilon { get; init; } = 0.2;
    /// <summary>Upper clipping bound: ratio ≤ 1 + epsilon_high; null: <see cref="Epsilon"/> (DAPO uses 0.28).</summary>
    [JsonPropertyName("epsilon_high")] public double? EpsilonHigh { get; init; }
    /// <summary><c>grpo</c>, <c>bnpo</c>, <c>dr_grpo</c> or <c>dapo</c> (TRL's default); see <see cref="GrpoLoss"/>.</summary>
    [JsonPropertyName("loss_type")] public string LossType { get; init; } = GrpoLossTypes.Dapo;
    /// <summary><c>group</c> (divide by the group's std), <c>batch</c> (by the rollout batch's) or <c>none</c>.</summary>
    [JsonPropertyName("scale_rewards")] public string ScaleRewards { get; init; } = "group";
    /// <summary>Exclude completions that hit max_completion_length without eos from the loss (DAPO).</summary>
    [JsonPropertyName("mask_truncated_completions")] public bool MaskTruncatedCompletions { get; init; }
    /// <summary>Built-in reward functions, comma-separated (<see cref="Rewards.Names"/>); a program adds its own with
    /// <see cref="GrpoTrainer"/>'s reward list.</summary>
    [JsonPropertyName("reward_funcs")] public string RewardFuncs { get; init; } = "accuracy";
    /// <summary>One weight per reward function, comma-separated; null: all 1.</summary>
    [JsonPropertyName("reward_weights")] public string? RewardWeights { get; init; }
    /// <summary>Ask for the R1 format (a system prompt asking for &lt;think&gt;…&lt;/think&gt;&lt;answer&gt;…&lt;/answer&gt;,
    /// open-r1's); accuracy then reads the &lt;answer&gt; block.</summary>
    [JsonPropertyName("think_format")] public bool ThinkFormat { get; init; }
    /// <summary>Frames sampled uniformly from each video (as <c>evaluate --frames</c>).</summary>
    [JsonPropertyName("frames")] public int Frames { get; init; } = 16;

    /// <summary>The upper clipping epsilon in effect.</summary>
    public double EpsilonHighOrDefault => EpsilonHigh ?? Epsilon;

    /// <summary>TRL's GRPOConfig overrides of transformers' TrainingArguments (learning_rate 1e-6, one learning rate for
    /// every group, gradient checkpointing on) and no weight decay or warm-up, as transformers' defaults; the rest as SFT.</summary>
    public static TrainingArguments DefaultTrainingArguments { get; } = new()
    {
        LearningRate = 1e-6, MmProjectorLr = null, WeightDecay = 0.0, WarmupRatio = 0.0, GradientAccumulationSteps = 1,
        GradientCheckpointing = true,
    };

    /// <summary>The settings by their JSON key (= flag) names, in declaration order.</summary>
    public static IReadOnlyList<(string Name, PropertyInfo Property)> Named { get; } = typeof(GrpoConfig).GetProperties()
        .Select(p => (Name: p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name, Property: p))
        .Where(a => a.Name != null).Select(a => (a.Name!, a.Property)).ToArray();

    /// <summary>The GRPO settings of a training config file (its other keys are <see cref="TrainingArguments"/>', read with
    /// <see cref="TrainingArguments.FromJsonFile(string, TrainingArguments, IReadOnlyList{ValueTuple{string, PropertyInfo}})"/>);
    /// unknown, repeated or mistyped keys are listed with their line.</summary>
    public static GrpoConfig FromJsonFile(string path) => TrainingArguments.ReadJsonFile(path, Named, new GrpoConfig(), TrainingArguments.Named);

    /// <summary>The reward weights, one per function (all 1 when unset); throws naming reward_weights when they do not parse
    /// or do not match the functions' count.</summary>
    public IReadOnlyList<double> Weights(int functions)
    {
        if (RewardWeights is null) return [.. Enumerable.Repeat(1.0, functions)];
        var parts = RewardWeights.Split(',', StringSplitOptions.TrimEntries);
        var weights = parts.Select(p => double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out double w) && double.IsFinite(w)
            ? w : throw new ArgumentException($"reward_weights '{RewardWeights}': '{p}' is not a finite number.")).ToArray();
        if (weights.Length != functions)
            throw new ArgumentException($"reward_weights has {weights.Length} weight(s) but there are {functions} reward function(s).");
        return weights;
    }

    /// <summary>Throws <see cref="ArgumentException"/> listing every setting out of range, as TRL's checks do.</summary>
    public void Validate()
    {
        var problems = new List<string>();
        void Require(bool ok, string problem) { if (!ok) problems.Add(problem); }
        static string F(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        Require(NumGenerations >= 2, $"num_generations must be at least 2 (advantages compare completions within a group); got {NumGenerations}.");
        Require(MaxCompletionLength >= 1, $"max_completion_length must be at least 1; got {MaxCompletionLength}.");
        Require(Temperature > 0 && double.IsFinite(Temperature), $"temperature must be positive; got {F(Temperature)}.");
        Require(TopP is > 0 and <= 1, $"top_p must be in (0, 1]; got {F(TopP)}.");
        Require(TopK >= 0, $"top_k must be 0 (off) or more; got {TopK}.");
        Require(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty), $"repetition_penalty must be positive; got {F(RepetitionPenalty)}.");
        Require(Beta >= 0 && double.IsFinite(Beta), $"beta must be 0 or more; got {F(Beta)}.");
        Require(NumIterations >= 1, $"num_iterations must be at least 1; got {NumIterations}.");
        Require(Epsilon is >= 0 and < 1, $"epsilon must be in [0, 1); got {F(Epsilon)}.");
        Require(EpsilonHigh is null || EpsilonHigh >= 0 && double.IsFinite(EpsilonHigh.Value), $"epsilon_high must be 0 or more; got {F(EpsilonHigh ?? 0)}.");
        Require(GrpoLossTypes.All.Contains(LossType), $"loss_type '{LossType}' is not one of {string.Join(", ", GrpoLossTypes.All)}.");
        Require(ScaleRewards is "group" or "batch" or "none", $"scale_rewards '{ScaleRewards}' is not one of group, batch, none.");
        Require(Frames >= 1 && Frames <= TrainingArguments.MaxVideoFrames, $"frames must be 1 to {TrainingArguments.MaxVideoFrames}; got {Frames}.");
        foreach (string name in RewardNames)
            Require(Rewards.Names.Contains(name), $"reward_funcs: unknown reward '{name}'; built-in ones: {string.Join(", ", Rewards.Names)}.");
        if (problems.Count == 0) Weights(RewardNames.Count);
        if (problems.Count > 0) throw new ArgumentException(string.Join(Environment.NewLine, problems));
    }

    /// <summary>The built-in reward functions asked for, in order.</summary>
    public IReadOnlyList<string> RewardNames => [.. RewardFuncs.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)];
}

/// <summary>TRL's names of the loss normalisations.</summary>
public static class GrpoLossTypes
{
    /// <summary>Each sequence's token mean, then the mean over sequences (the GRPO paper; length-biased).</summary>
    public const string Grpo = "grpo";
    /// <summary>The token mean over the micro-batch.</summary>
    public const string Bnpo = "bnpo";
    /// <summary>The token sum over the micro-batch ÷ (sequences × max_completion_length) (Dr. GRPO).</summary>
    public const string DrGrpo = "dr_grpo";
    /// <summary>The token sum ÷ the active tokens of the whole rollout batch (DAPO; TRL's default).</summary>
    public const string Dapo = "dapo";

    public static IReadOnlyList<string> All { get; } = [Grpo, Bnpo, DrGrpo, Dapo];
}
