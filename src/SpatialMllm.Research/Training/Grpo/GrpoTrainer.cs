using System.Diagnostics;
using System.Globalization;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>One optimizer step of GRPO, with TRL's metric names (<c>loss</c>, <c>reward</c>, <c>reward_std</c>,
/// <c>rewards/NAME/mean</c>, <c>rewards/NAME/std</c>, <c>kl</c>, <c>entropy</c>, <c>clip_ratio/low_mean</c>, …,
/// <c>completions/mean_length</c>, <c>completions/clipped_ratio</c>, <c>frac_reward_zero_std</c>).</summary>
/// <param name="RolloutSeconds">Time spent sampling and scoring the rollout batch this step trains on (0 for the
/// further iterations of a batch).</param>
public sealed record GrpoStepLog(int Step, int TotalSteps, IReadOnlyDictionary<string, double?> Metrics, double Seconds, double RolloutSeconds)
{
    /// <summary>The rollout batch's mean reward (weighted sum of the reward functions).</summary>
    public double Reward => Metrics["reward"] ?? double.NaN;
    public double Loss => Metrics["loss"] ?? double.NaN;
}

/// <summary>What a GRPO run did.</summary>
public sealed record GrpoSummary(int StartStep, int FinalStep, int TotalSteps, IReadOnlyList<GrpoStepLog> Steps, string? FinalModelFolder);

/// <summary>
/// GRPO as TRL's <c>GRPOTrainer</c> runs it, on our fast path. Per rollout batch (<c>gradient_accumulation_steps</c>
/// questions): each question's video is decoded and encoded once and <see cref="GrpoConfig.NumGenerations"/> completions
/// are sampled from one shared prefix in one batch (<see cref="GrpoGroup.Sample"/>); the rewards give group-relative
/// advantages (<see cref="GrpoAdvantages"/>); the old policy's log-probs (num_iterations &gt; 1) and the reference's
/// (beta ≠ 0) are computed once. Then <see cref="GrpoConfig.NumIterations"/> optimizer steps, each accumulating the
/// questions' losses (<see cref="GrpoLoss"/>, a forward over prompt + completions with autograd per question), clipping
/// to max_grad_norm and taking an AdamW step at the cosine schedule's rate.
/// <para>The output folder, resume and checkpoints follow SFT's contract (<see cref="TrainingRunFolder"/>): one writer,
/// <c>run.json</c> (with GRPO's settings and the reward functions' names), refused resumes, atomic checkpoints, saved at
/// rollout-batch boundaries (save_steps rounded up to a multiple of num_iterations). Logs <c>log.csv</c> and TensorBoard
/// with TRL's metric names, and a progress line per step.</para>
/// </summary>
public sealed class GrpoTrainer
{
    readonly TrainingArguments _args;
    readonly GrpoConfig _config;
    readonly IReadOnlyList<Reward>? _givenRewards;
    readonly IReadOnlyList<string> _rewardNames;
    /// <summary>The VSI-Bench question types of the training questions (log.csv's rewards_by_type columns), set by Run.</summary>
    IReadOnlyList<string> _questionTypes = [];
    IReadOnlyList<Reward> _rewards = [];
    readonly IReadOnlyList<double> _weights;
    readonly Action<string> _log;
    readonly TrainingRunFolder _folder;
    int _stepsTaken;

    /// <param name="rewards">The reward functions; null: the built-in ones <see cref="GrpoConfig.RewardFuncs"/> names.</param>
    /// <param name="forceNew">Start over where output_dir holds an earlier run (moved aside, as for SFT).</param>
    public GrpoTrainer(TrainingArguments args, GrpoConfig config, IReadOnlyList<Reward>? rewards = null, Action<string>? log = null, bool forceNew = false)
    {
        args.Validate();
        config.Validate();
        _args = args;
        _config = config;
        // Built-in rewards are made once the questions are loaded (CIDEr's document frequencies come from them).
        _givenRewards = rewards;
        _rewardNames = rewards?.Select(r => r.Name).ToList() ?? config.RewardNames;
        if (_rewardNames.Count == 0) throw new ArgumentException("GRPO needs at least one reward function.");
        var duplicate = _rewardNames.GroupBy(name => name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate != null) throw new ArgumentException($"Two reward functions are named '{duplicate.Key}': each needs its own name (its metrics are logged by name).");
        _weights = config.Weights(_rewardNames.Count);
        _log = log ?? Console.WriteLine;
        _folder = new TrainingRunFolder(args, _log, DataParallel.Single, forceNew);
    }

    /// <summary>
    /// The questions of <c>dataset_use</c>, comma-separated files: VSI-Bench's format (<c>test.jsonl</c>, as <c>spatial-mllm
    /// synthetic</c> and VSI-Bench give them; videos at <c>{data_path}/{dataset}/{scene_name}.mp4</c>) or ScanQA's JSON list
    /// (<c>.json</c>; videos at <c>{data_path}/{scene_id}.mp4</c>, answers as the caption rewards' references), data_path each
    /// file's folder when unset, each with its benchmark's evaluation prompt. Every video is checked first; missing ones are listed.
    /// </summary>
    public static IReadOnlyList<GrpoQuestion> LoadQuestions(string datasetUse, string? dataPath)
    {
        var questions = new List<GrpoQuestion>();
        foreach (var (file, percent) in SftAnnotations.Files(datasetUse))
        {
            if (percent != null)
                throw new ArgumentException($"dataset_use '{datasetUse}': the %N sampling suffix is SFT's; GRPO trains on whole question files.");
            string root = dataPath ?? Path.GetDirectoryName(Path.GetFullPath(file))!;
            if (Path.GetExtension(file).Equals(".json", StringComparison.OrdinalIgnoreCase))
            {
                // ScanQA (its JSON list): the evaluation's prompt, the answers as references for the caption rewards.
                var scanQa = ScanQa.Load(file);
                var byId = scanQa.Questions.ToDictionary(q => q.Id);
                foreach (var item in ScanQaVideos.Items(scanQa, root))
                {
                    var q = byId[item.Id];
                    questions.Add(new GrpoQuestion($"{Path.GetFileName(file)}:{item.Id}", item.Video.Path, item.Prompt, q.Answers[0], References: q.Answers));
                }
                continue;
            }
            var dataset = VsiBench.Load(file);
            foreach (var item in VsiBenchVideos.Items(dataset, root))
            {
                var q = dataset[int.Parse(item.Id, CultureInfo.InvariantCulture)];
                questions.Add(new GrpoQuestion($"{Path.GetFileName(file)}:{item.Id}", item.Video.Path, item.Prompt, q.GroundTruth, q));
            }
        }
        return questions;
    }

    /// <summary>The metric columns of log.csv, in order (TRL's names).</summary>
    IReadOnlyList<string> Columns =>
    [
        "epoch", "loss", "learning_rate", "grad_norm", "reward", "reward_std",
        .. _rewardNames.SelectMany(name => new[] { $"rewards/{name}/mean", $"rewards/{name}/std" }),
        .. _questionTypes.SelectMany(type => new[] { $"rewards_by_type/{type}/mean", $"rewards_by_type/{type}/std" }),
        "kl", "entropy", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean",
        "completions/mean_length", "completions/min_length", "completions/max_length", "completions/clipped_ratio",
        "frac_reward_zero_std", "seconds", "rollout_seconds",
    ];

    /// <summary>Trains to the end (or until <paramref name="cancel"/> fires between steps) and saves the final model into
    /// output_dir; throws as <see cref="SftTrainer.Run"/> does for a locked folder, a resume that differs, or no question.</summary>
    public GrpoSummary Run(CancellationToken cancel = default)
    {
        var a = _args;
        using var outputLock = _folder.Lock();
        if (!Directory.Exists(a.ModelNameOrPath)) throw new DirectoryNotFoundException($"model_name_or_path {a.ModelNameOrPath}: no such folder.");
        var questions = LoadQuestions(a.DatasetUse, a.DataPath);
        if (questions.Count == 0) throw new NothingToTrainException($"No question in {a.DatasetUse}", []);
        _rewards = _givenRewards ?? [.. _config.RewardNames.Select(name => Rewards.ByName(name, questions))];
        _questionTypes = [.. questions.Select(q => q.VsiBench?.QuestionType).OfType<string>().Distinct().Order(StringComparer.Ordinal)];
        var device = a.Device is null ? TorchRuntime.DefaultDevice : TorchRuntime.ParseDevice(a.Device);
        var dtype = (a.Bf16 ?? device.type == DeviceType.CUDA) ? ScalarType.BFloat16 : ScalarType.Float32;
        int batchesPerEpoch = (questions.Count + a.GradientAccumulationSteps - 1) / a.GradientAccumulationSteps;
        double total = a.MaxSteps > 0 ? a.MaxSteps : Math.Ceiling(a.NumTrainEpochs * batchesPerEpoch) * _config.NumIterations;
        if (total > int.MaxValue) throw new ArgumentException($"num_train_epochs {a.NumTrainEpochs} makes more than {int.MaxValue} steps: lower it or set max_steps.");
        var plan = _folder.Plan(Manifest(dtype));
        _stepsTaken = 0;
        try { return Train(questions, plan, device, dtype, batchesPerEpoch, (int)total, cancel); }
        catch (Exception) when (plan.StartedEmpty && _stepsTaken == 0)
        {
            _folder.ForgetRun();
            throw;
        }
    }

    /// <summary>SFT's manifest (model, data, arguments) with GRPO's settings and the reward functions.</summary>
    RunManifest Manifest(ScalarType dtype)
    {
        var fields = new SortedDictionary<string, string>(TrainingRunManifest.Describe(_args, 1, dtype).Fields.ToDictionary(), StringComparer.Ordinal)
        {
            ["method"] = "grpo",
            ["grpo.rewards"] = string.Join(",", _rewardNames.Select((name, i) => $"{name}×{_weights[i].ToString("R", CultureInfo.InvariantCulture)}")),
        };
        foreach (var (name, property) in GrpoConfig.Named)
            if (name is not ("reward_funcs" or "reward_weights"))
                fields["grpo." + name] = Convert.ToString(property.GetValue(_config), CultureInfo.InvariantCulture) ?? "null";
        return new RunManifest(fields);
    }

    GrpoSummary Train(IReadOnlyList<GrpoQuestion> questions, OutputPlan plan, Device device, ScalarType dtype, int batchesPerEpoch, int totalSteps,
        CancellationToken cancel)
    {
        var a = _args;
        var c = _config;
        string? resume = plan.Resume;
        int step = resume is null ? 0 : TrainingRunFolder.ReadGlobalStep(resume);
        if (step >= totalSteps)
            throw new ArgumentException($"{resume} is at step {step}, and this run has {totalSteps} steps: nothing is left to train. Raise num_train_epochs or max_steps.");
        using var trained = TrainedModel.Load(a, resume, device, dtype, _log);
        var (model, trainable) = (trained.Model, trained.Trainable);
        bool encoderTrains = trained.EncodersTrain;
        using var optimizer = new AdamW(trainable, new AdamWOptions(a.AdamBeta1, a.AdamBeta2, a.AdamEpsilon, a.WeightDecay));
        if (resume != null)
        {
            optimizer.Load(Path.Combine(resume, SftTrainer.OptimizerFile));
            _log($"resumed from {resume} at step {step}");
        }
        // TRL loads no reference when beta is 0. Full fine-tuning: a frozen copy of the base model; LoRA: the policy with
        // its adapters off (TRL's use_adapter(model, None)), which needs no second copy.
        bool vggtFrozen = !trainable.Any(p => p.Key.StartsWith(VggtModel.CheckpointPrefix, StringComparison.Ordinal));
        using IReferencePolicy? reference = c.Beta == 0 ? null
            : trained.Lora is { } lora ? new AdaptersOffReference(model, lora, vggtFrozen)
            : FrozenCopyReference.FrozenCopy(a.ModelNameOrPath, device, dtype, vggtFrozen);
        var schedule = CosineSchedule.FromRatio(totalSteps, a.WarmupRatio);
        int saveEvery = a.SaveSteps <= 0 ? 0 : a.SaveSteps < 1 ? (int)Math.Ceiling(a.SaveSteps * totalSteps) : (int)a.SaveSteps;
        saveEvery = (saveEvery + c.NumIterations - 1) / c.NumIterations * c.NumIterations;
        double projectorLr = a.MmProjectorLr ?? a.LearningRate;
        var optimizerStep = new OptimizerStep(trainable, optimizer, a.MaxGradNorm);
        _log($"{questions.Count} questions, {trainable.Count} trainable tensors ({trainable.Sum(p => p.Parameter.NumberOfElements):N0} parameters), " +
             $"{totalSteps} steps of {a.GradientAccumulationSteps} question(s) × {c.NumGenerations} completions, loss_type {c.LossType}, beta {c.Beta}, " +
             $"rewards {string.Join(", ", _rewards.Select(r => r.Name))}, on {device} {dtype}");

        using var logs = new TrainingLogWriter(a.OutputDir, resumedStep: step, Columns);
        var steps = new List<GrpoStepLog>();
        int startStep = step;
        while (step < totalSteps && !cancel.IsCancellationRequested)
        {
            var clock = Stopwatch.StartNew();
            int batch = step / c.NumIterations;
            var groups = new List<GrpoGroup>();
            try
            {
                for (int i = 0; i < a.GradientAccumulationSteps && !cancel.IsCancellationRequested; i++)
                {
                    long slot = (long)batch * a.GradientAccumulationSteps + i;
                    groups.Add(Rollout(model, reference, QuestionAt(questions, slot), RolloutSeed(slot)));
                }
                if (cancel.IsCancellationRequested) break;
                var advantages = GrpoAdvantages.Compute([.. groups.SelectMany(g => g.Rewards)], _weights, c.NumGenerations, c.ScaleRewards);
                double numItems = groups.Sum(g => g.ActiveTokens);
                var rolloutMetrics = RolloutMetrics(groups, advantages);
                double rolloutSeconds = clock.Elapsed.TotalSeconds;
                for (int iteration = step % c.NumIterations; iteration < c.NumIterations && step < totalSteps && !cancel.IsCancellationRequested; iteration++)
                {
                    if (iteration > 0) clock.Restart();
                    optimizerStep.Begin();
                    double loss = 0;
                    var lossMetrics = new List<(double? Kl, double Low, double High, double Region, double Entropy)>();
                    for (int i = 0; i < groups.Count; i++)
                    {
                        using var scope = torch.NewDisposeScope();
                        var g = groups[i];
                        var visual = encoderTrains
                            ? model.EncodeForTraining(g.Video.PixelValuesVideos, g.Video.Grid, g.Video.VideoTchw, g.SpatialTokens)
                            : g.VisualTokens;
                        // The prompt once for the K completions, unless gradient checkpointing asks for the least memory.
                        var (logProbs, entropies) = CompletionLogProbs.Compute(model, visual, g.PromptIds, g.Video.Grid, g.Video.SecondPerGridT,
                            g.CompletionIds, c.Temperature, sharePrompt: !a.GradientCheckpointing);
                        var groupAdvantages = torch.tensor(advantages.Advantages.AsSpan(i * c.NumGenerations, c.NumGenerations).ToArray(), device: device)
                            .to(ScalarType.Float32);
                        var result = GrpoLoss.Compute(logProbs, g.CompletionMask, groupAdvantages, c, g.OldLogProbs, g.RefLogProbs,
                            a.GradientAccumulationSteps, numItems);
                        result.Loss.backward();
                        loss += result.Loss.item<float>();
                        double entropy = (entropies * g.CompletionMask).sum().item<float>() / Math.Max(g.ActiveTokens, 1);
                        lossMetrics.Add((result.Kl, result.ClipLow, result.ClipHigh, result.ClipRegion, entropy));
                    }
                    double factor = schedule.Factor(step);
                    double norm = optimizerStep.Update(group => (group == ParameterGroup.Language ? a.LearningRate : projectorLr) * factor);
                    step++;
                    _stepsTaken++;
                    if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
                    var metrics = new Dictionary<string, double?>(rolloutMetrics)
                    {
                        ["epoch"] = (double)step / c.NumIterations / batchesPerEpoch,
                        ["loss"] = loss,
                        ["learning_rate"] = a.LearningRate * factor,
                        ["grad_norm"] = norm,
                        ["kl"] = c.Beta != 0 ? lossMetrics.Average(m => m.Kl!.Value) : null,
                        ["entropy"] = lossMetrics.Average(m => m.Entropy),
                        ["clip_ratio/low_mean"] = lossMetrics.Average(m => m.Low),
                        ["clip_ratio/high_mean"] = lossMetrics.Average(m => m.High),
                        ["clip_ratio/region_mean"] = lossMetrics.Average(m => m.Region),
                        ["rollout_seconds"] = iteration == 0 ? rolloutSeconds : 0,
                    };
                    double seconds = clock.Elapsed.TotalSeconds;
                    metrics["seconds"] = seconds;
                    var entry = new GrpoStepLog(step, totalSteps, metrics, seconds, iteration == 0 ? rolloutSeconds : 0);
                    steps.Add(entry);
                    logs.Write(step, metrics);
                    if (a.LoggingSteps > 0 && (step % a.LoggingSteps == 0 || step == totalSteps)) _log(ProgressLine(entry));
                    if (saveEvery > 0 && step % saveEvery == 0 && step < totalSteps)
                        _folder.SaveCheckpoint(step, totalSteps, plan.Manifest, folder =>
                        {
                            trained.Save(folder);
                            optimizer.Save(Path.Combine(folder, SftTrainer.OptimizerFile));
                        }, new { args = _args, grpo = _config });
                }
            }
            finally
            {
                foreach (var g in groups) g.Dispose();
            }
        }
        string? final = null;
        if (step >= totalSteps)
        {
            trained.SaveFinal(a.OutputDir, a.MergeLora, _log);
            final = a.OutputDir;
        }
        return new GrpoSummary(startStep, step, totalSteps, steps, final);
    }

    /// <summary>One question's completions, rewards, and the old and reference log-probabilities the loss needs.</summary>
    GrpoGroup Rollout(SpatialMllmModel model, IReferencePolicy? reference, GrpoQuestion question, ulong seed)
    {
        GrpoGroup group;
        try { group = GrpoGroup.Sample(model, question, _config, seed); }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or NotSupportedException)
        {
            throw new InvalidDataException($"question {question.Id} ({question.Video}): {e.Message}", e);
        }
        try
        {
            group.Rewards = [.. group.Completions.Select(completion => _rewards.Select(r => r.Score(completion) ?? double.NaN).ToArray())];
            // TRL computes the old policy's log-probs only when a rollout batch is used for more than one update; with
            // one, they equal the current ones (detached in the loss).
            if (_config.NumIterations > 1)
                using (torch.no_grad())
                {
                    var (old, entropies) = CompletionLogProbs.Compute(model, group.VisualTokens, group.PromptIds, group.Video.Grid,
                        group.Video.SecondPerGridT, group.CompletionIds, _config.Temperature);
                    entropies.Dispose();
                    group.OldLogProbs = old.DetachFromDisposeScope();
                }
            if (reference != null) group.RefLogProbs = reference.PerTokenLogProbs(group, _config.Temperature).DetachFromDisposeScope();
            return group;
        }
        catch
        {
            group.Dispose();
            throw;
        }
    }

    /// <summary>The rollout batch's reward and completion statistics (TRL's names).</summary>
    Dictionary<string, double?> RolloutMetrics(IReadOnlyList<GrpoGroup> groups, GrpoAdvantages advantages)
    {
        var lengths = groups.SelectMany(g => g.Completions).Select(x => (double)x.TokenIds.Count).ToArray();
        var metrics = new Dictionary<string, double?>
        {
            ["reward"] = advantages.RewardMean,
            ["reward_std"] = advantages.RewardStd,
            ["frac_reward_zero_std"] = advantages.FracRewardZeroStd,
            ["completions/mean_length"] = lengths.Average(),
            ["completions/min_length"] = lengths.Min(),
            ["completions/max_length"] = lengths.Max(),
            ["completions/clipped_ratio"] = groups.SelectMany(g => g.Completions).Average(x => x.Truncated ? 1.0 : 0.0),
        };
        for (int f = 0; f < _rewards.Count; f++)
        {
            metrics[$"rewards/{_rewards[f].Name}/mean"] = advantages.FunctionMeans[f];
            metrics[$"rewards/{_rewards[f].Name}/std"] = advantages.FunctionStds[f];
        }
        // The weighted reward per VSI-Bench question type (empty where this batch asked none of the type).
        var byType = groups.SelectMany((g, i) => Enumerable.Range(0, g.Completions.Count)
                .Select(k => (Type: g.Question.VsiBench?.QuestionType, Reward: advantages.Rewards[i * g.Completions.Count + k])))
            .Where(x => x.Type != null).ToLookup(x => x.Type!, x => x.Reward);
        static double? Logged(double value) => double.IsNaN(value) ? null : value;
        foreach (string type in _questionTypes)
        {
            var rewards = byType[type].ToArray();
            metrics[$"rewards_by_type/{type}/mean"] = Logged(GrpoAdvantages.NanMean(rewards));
            metrics[$"rewards_by_type/{type}/std"] = Logged(GrpoAdvantages.NanStd(rewards));
        }
        return metrics;
    }

    string ProgressLine(GrpoStepLog s)
    {
        var m = s.Metrics;
        string F(string key, string format) => m.GetValueOrDefault(key) is double v ? v.ToString(format, CultureInfo.InvariantCulture) : "-";
        string perFunction = string.Join("  ", _rewards.Select(r => $"{r.Name} {F($"rewards/{r.Name}/mean", "F3")}"));
        return $"step {s.Step}/{s.TotalSteps}  loss {F("loss", "F4")}  reward {F("reward", "F3")} ± {F("reward_std", "F3")}  {perFunction}  " +
               $"kl {F("kl", "F4")}  clip {F("clip_ratio/region_mean", "F3")}  len {F("completions/mean_length", "F1")}  " +
               $"lr {F("learning_rate", "E2")}  grad_norm {F("grad_norm", "F3")}  {s.Seconds.ToString("F2", CultureInfo.InvariantCulture)} s" +
               (s.RolloutSeconds > 0 ? $" (rollouts {s.RolloutSeconds.ToString("F2", CultureInfo.InvariantCulture)} s)" : "");
    }

    /// <summary>The question of a global slot: each epoch visits every question once, in an order fixed by the seed and
    /// the epoch (a resumed run sees the same questions).</summary>
    GrpoQuestion QuestionAt(IReadOnlyList<GrpoQuestion> questions, long slot)
    {
        int epoch = (int)(slot / questions.Count);
        if (_order is null || _orderEpoch != epoch)
        {
            _order = Enumerable.Range(0, questions.Count).ToArray();
            new Random(_args.Seed + epoch).Shuffle(_order);
            _orderEpoch = epoch;
        }
        return questions[_order[slot % questions.Count]];
    }

    int[]? _order;
    int _orderEpoch;

    /// <summary>The rollout seed of a slot: completion k of it samples with this + k, so a resumed run samples the same
    /// completions from the same weights.</summary>
    ulong RolloutSeed(long slot) => ((ulong)(uint)_args.Seed << 32) + (ulong)slot * (ulong)_config.NumGenerations;
}
