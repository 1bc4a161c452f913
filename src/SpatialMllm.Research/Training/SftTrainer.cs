using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>One logged optimizer step. <paramref name="Loss"/> and <paramref name="GradNorm"/> are null when every
/// example of the step was skipped: the step updated nothing.</summary>
/// <param name="Examples">Examples trained in the step (over all ranks).</param>
public sealed record TrainingStepLog(int Step, int TotalSteps, double Epoch, double? Loss, double LearningRate, double ProjectorLearningRate,
    double? GradNorm, double TokensPerSecond, double Seconds, int SkippedRows, int Examples);

/// <summary>What a run did.</summary>
/// <param name="SkippedRows">Each annotation row that could not be trained on, once.</param>
public sealed record TrainingSummary(int StartStep, int FinalStep, int TotalSteps, IReadOnlyList<TrainingStepLog> Steps,
    IReadOnlyList<AnnotationException> SkippedRows, string? FinalModelFolder);

/// <summary>A run with nothing to learn from (no usable row, or every example tried skipped); the message lists the
/// skipped rows (file:line: why). Nothing is saved.</summary>
public sealed class NothingToTrainException(string reason, IReadOnlyList<AnnotationException> skippedRows)
    : InvalidOperationException(Compose(reason, skippedRows))
{
    const int Listed = 20;

    public IReadOnlyList<AnnotationException> SkippedRows { get; } = skippedRows;

    static string Compose(string reason, IReadOnlyList<AnnotationException> rows) =>
        $"{reason}; nothing was trained or saved." + (rows.Count == 0 ? "" : Environment.NewLine + "Skipped rows:" + Environment.NewLine +
            string.Join(Environment.NewLine, rows.Take(Listed).Select(r => "  " + r.Message)) +
            (rows.Count > Listed ? $"{Environment.NewLine}  … and {rows.Count - Listed} more" : ""));
}

/// <summary>
/// The seed's SFT loop (transformers' Trainer as <c>train_qwen.py</c> configures it) on our model: per optimizer step,
/// <c>gradient_accumulation_steps</c> examples per rank, each loss / accumulation backpropagated, gradients averaged over
/// the ranks, clipped to <c>max_grad_norm</c>, one AdamW update at the cosine schedule's rate. Logs to the console,
/// <c>log.csv</c> and TensorBoard event files (<c>runs/</c>) in output_dir; saves <c>checkpoint-N</c> folders in the
/// released layout plus the optimizer state (with LoRA: the adapter in PEFT's layout), and resumes from the newest one.
/// <para>
/// A run is safe to stop, share and resume, as an evaluation is: one writer per output folder (<c>train.lock</c>, naming
/// the holder); <c>run.json</c> records the base model, data and settings, and a resume that differs is refused with
/// the differences listed unless asked for (a checkpoint named in resume_from_checkpoint, or <c>forceNew</c>, which
/// moves the earlier run aside); checkpoint folders appear whole or not at all. A bad annotation row is reported (file:line:
/// why) and skipped; a run in which no example can be trained stops with the list instead of saving an untouched model.
/// </para>
/// </summary>
public sealed class SftTrainer
{
    public const string OptimizerFile = "optimizer.safetensors", StateFile = TrainingRunFolder.StateFile, LogFile = "log.csv", LockFile = TrainingRunFolder.LockFile;

    /// <summary>Where <c>merge_lora</c> writes the base model with the trained adapter merged in, inside output_dir.</summary>
    public const string MergedFolder = "merged";

    readonly TrainingArguments _args;
    readonly Action<string> _log;
    readonly DataParallel _parallel;
    readonly TrainingRunFolder _folder;
    readonly SftAuxiliaryLoss? _auxiliaryLoss;

    /// <param name="forceNew">Start over even where output_dir holds an earlier run, whose files are first moved into
    /// <c>earlier-run.bak-TIME</c> inside output_dir (<c>--force-new</c>; nothing is deleted).</param>
    /// <param name="auxiliaryLoss">Added to each batch's SFT loss (logged beside it on the console; log.csv keeps the SFT
    /// loss alone); null: the seed's objective.</param>
    public SftTrainer(TrainingArguments args, Action<string>? log = null, DataParallel? parallel = null, bool forceNew = false,
        SftAuxiliaryLoss? auxiliaryLoss = null)
    {
        args.Validate();
        _args = args;
        _auxiliaryLoss = auxiliaryLoss;
        _parallel = parallel ?? DataParallel.Single;
        _log = _parallel.IsMain ? log ?? Console.WriteLine : _ => { };
        _folder = new TrainingRunFolder(args, _log, _parallel, forceNew);
    }

    /// <summary>Checks every annotation row and its video without loading the model's weights or decoding frames.</summary>
    public static (int Rows, IReadOnlyList<AnnotationException> Errors) DryRun(TrainingArguments args)
    {
        args.Validate();
        var (rows, errors) = SftAnnotations.Load(args.DatasetUse, args.DataPath);
        int unparsed = errors.Count;
        var builder = NewBuilder(args.ModelNameOrPath, args.DataOptions);
        foreach (var row in rows)
        {
            try { builder.Validate(row); }
            catch (AnnotationException e) { errors.Add(e); }
        }
        return (rows.Count + unparsed, errors);
    }

    static SftExampleBuilder NewBuilder(string modelFolder, SftDataOptions options)
    {
        var config = ConfigFile.Load(Path.Combine(modelFolder, "config.json"));
        var processor = File.Exists(Path.Combine(modelFolder, "preprocessor_config.json")) ? Processing.QwenVideoProcessor.FromFolder(modelFolder) : new Processing.QwenVideoProcessor();
        return new SftExampleBuilder(Text.Qwen2Tokenizer.FromFolder(modelFolder), processor, config.Tokens, options);
    }

    /// <summary>Trains to the end (or until <paramref name="cancel"/> fires between steps, as a kill would, without
    /// saving) and saves the final model into output_dir. Throws <see cref="OutputLockedException"/> while another run
    /// writes output_dir, <see cref="RunManifestMismatchException"/> for a resume that differs, and
    /// <see cref="NothingToTrainException"/> when no example can be trained. <paramref name="stopAfter"/> ends the run after
    /// that many steps, unsaved (the schedule stays that of all the steps), as a check of a run's first steps does.
    /// <paramref name="saveWhenCancelled"/>: a run stopped by <paramref name="cancel"/> saves the model as it is then
    /// (a time limit's run: the schedule cut short, which the log says). <paramref name="fitTo"/>: a time by which the run
    /// should end; after <see cref="FitCalibrationSteps"/> steps, fewer steps are planned (the cosine schedule recomputed
    /// for them from there on) when the planned ones would not fit at the speed measured so far.</summary>
    public TrainingSummary Run(CancellationToken cancel = default, int? stopAfter = null, bool saveWhenCancelled = false, DateTime? fitTo = null)
    {
        if (_parallel.WorldSize > 1 && (saveWhenCancelled || fitTo is not null))
            throw new ArgumentException("A time-fitted or time-limited run is for one process: each rank would measure its own pace and stop at its own step.");
        var a = _args;
        using var outputLock = _folder.Lock();
        var skipped = new SkippedRows(_parallel.IsMain ? _log : line => Console.Error.WriteLine($"rank {_parallel.Rank}: {line}"));
        var (rows, unparsed) = SftAnnotations.Load(a.DatasetUse, a.DataPath);
        foreach (var e in unparsed) skipped.Add(e);
        if (rows.Count == 0) throw new NothingToTrainException($"No usable annotation row in {a.DatasetUse}", skipped.Rows);

        var device = a.Device is null ? TorchRuntime.DefaultDevice : TorchRuntime.ParseDevice(a.Device);
        if (device.type == DeviceType.CUDA && _parallel.WorldSize > 1) device = new Device(DeviceType.CUDA, _parallel.DeviceIndex);
        var dtype = (a.Bf16 ?? device.type == DeviceType.CUDA) ? ScalarType.BFloat16 : ScalarType.Float32;
        var (stepsPerEpoch, totalSteps) = Steps(rows.Count);
        if (!Directory.Exists(a.ModelNameOrPath)) throw new DirectoryNotFoundException($"model_name_or_path {a.ModelNameOrPath}: no such folder.");
        var plan = _folder.Plan(TrainingRunManifest.Describe(a, _parallel.WorldSize, dtype));
        _stepsTaken = 0;
        try
        {
            return Train(rows, plan, skipped, device, dtype, stepsPerEpoch, totalSteps, cancel, stopAfter, saveWhenCancelled, fitTo);
        }
        catch (Exception e) when (plan.StartedEmpty && _parallel.IsMain && (e is NothingToTrainException || _stepsTaken == 0))
        {
            // Everything of a run in output_dir is this run's, and it learned nothing: leave the folder as it was.
            _folder.ForgetRun();
            throw;
        }
    }

    /// <summary>Steps per epoch and in all; throws naming num_train_epochs when the count overflows.</summary>
    (int PerEpoch, int Total) Steps(int rows)
    {
        var a = _args;
        long microPerStep = (long)a.GradientAccumulationSteps * _parallel.WorldSize * a.PerDeviceTrainBatchSize;
        int perEpoch = (int)Math.Max(1, (rows + microPerStep - 1) / microPerStep);
        if (a.MaxSteps > 0) return (perEpoch, a.MaxSteps);
        double total = Math.Ceiling(a.NumTrainEpochs * perEpoch);
        if (total > int.MaxValue)
            throw new ArgumentException($"num_train_epochs {a.NumTrainEpochs.ToString("R", CultureInfo.InvariantCulture)} × {perEpoch} step(s) per epoch " +
                                        $"is more than {int.MaxValue} steps: lower num_train_epochs or set max_steps.");
        return (perEpoch, (int)total);
    }

    TrainingSummary Train(List<SftRow> rows, OutputPlan plan, SkippedRows skipped, Device device, ScalarType dtype, int stepsPerEpoch,
        int totalSteps, CancellationToken cancel, int? stopAfter, bool saveWhenCancelled, DateTime? fitTo)
    {
        var a = _args;
        string? resume = plan.Resume;
        int step = resume is null ? 0 : TrainingRunFolder.ReadGlobalStep(resume);
        if (step >= totalSteps)
            throw new ArgumentException($"{resume} is at step {step}, and this run has {totalSteps} steps: nothing is left to train. " +
                                        "Raise num_train_epochs or max_steps, or resume an earlier checkpoint.");
        using var run = TrainedModel.Load(a, resume, device, dtype, _log);
        var (model, trainable) = (run.Model, run.Trainable);
        using var optimizer = new AdamW(trainable, new AdamWOptions(a.AdamBeta1, a.AdamBeta2, a.AdamEpsilon, a.WeightDecay));
        if (resume != null)
        {
            optimizer.Load(Path.Combine(resume, OptimizerFile));
            _log($"resumed from {resume} at step {step}");
        }
        using var builder = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens, a.DataOptions);
        var videos = rows.Select(r => r.VideoPath).Distinct().ToList();
        if (a.DecodedVideoCache >= videos.Count)
        {
            var clock = Stopwatch.StartNew();
            int decoded = builder.Prefetch(videos);
            _log($"{decoded} videos decoded and processed ahead in {clock.Elapsed.TotalSeconds:F1} s");
        }
        var schedule = CosineSchedule.FromRatio(totalSteps, a.WarmupRatio);
        Stopwatch? calibration = null;
        int saveEvery = a.SaveSteps <= 0 ? 0 : a.SaveSteps < 1 ? (int)Math.Ceiling(a.SaveSteps * totalSteps) : (int)a.SaveSteps;
        double projectorLr = a.MmProjectorLr ?? a.LearningRate;
        var optimizerStep = new OptimizerStep(trainable, optimizer, a.MaxGradNorm);
        int world = _parallel.WorldSize;
        _log($"{rows.Count} examples, {trainable.Count} trainable tensors ({trainable.Sum(p => p.Parameter.NumberOfElements):N0} parameters), " +
             $"{totalSteps} steps of {a.GradientAccumulationSteps} × {(a.PerDeviceTrainBatchSize > 1 ? $"{a.PerDeviceTrainBatchSize} × " : "")}{world} examples, on {device} {dtype}");

        using var logs = _parallel.IsMain ? new TrainingLogWriter(a.OutputDir, resumedStep: step) : null;
        var steps = new List<TrainingStepLog>();
        int startStep = step;
        long trained = 0;
        while (step < totalSteps && !cancel.IsCancellationRequested && (stopAfter is null || step - startStep < stopAfter))
        {
            var clock = Stopwatch.StartNew();
            optimizerStep.Begin();
            double lossSum = 0, auxiliarySum = 0; long tokens = 0; int counted = 0, skippedNow = 0;
            int batchSize = a.PerDeviceTrainBatchSize, examplesPerStep = a.GradientAccumulationSteps * batchSize;
            for (int micro = 0; micro < a.GradientAccumulationSteps; micro++)
            {
                using var scope = torch.NewDisposeScope();
                var batch = new List<SftExample>(batchSize);
                try
                {
                    for (int j = 0; j < batchSize; j++)
                    {
                        long slot = (((long)step * a.GradientAccumulationSteps + micro) * world + _parallel.Rank) * batchSize + j;
                        try { batch.Add(builder.Build(RowAt(rows, slot, a.Seed))); }
                        catch (AnnotationException e)
                        {
                            skipped.Add(e);
                            skippedNow++;
                        }
                    }
                    if (batch.Count == 0) continue;
                    var (loss, auxiliary) = optimizerStep.Accumulate(model, batch, examplesPerStep, _auxiliaryLoss);
                    lossSum += loss * batch.Count;
                    auxiliarySum += (auxiliary ?? 0) * batch.Count;
                    counted += batch.Count;
                    tokens += batch.Sum(e => e.InputIds.Length);
                }
                finally
                {
                    foreach (var example in batch) example.Dispose();
                }
            }
            // Means over the ranks of the loss sum, tokens, skipped and trained examples (× world size: the totals).
            var means = _parallel.Average(lossSum, tokens, skippedNow, counted, auxiliarySum);
            int examples = (int)Math.Round(means[3] * world);
            double factor = schedule.Factor(step);
            double? meanLoss = null, norm = null;
            // A step whose examples were all skipped has no gradient: no update (AdamW's step count stays with the updates).
            if (examples > 0)
            {
                _parallel.AverageGradients(trainable);
                norm = optimizerStep.Update(g => (g == ParameterGroup.Language ? a.LearningRate : projectorLr) * factor);
                meanLoss = means[0] / means[3];
            }
            step++;
            _stepsTaken++;
            if (fitTo is not null && step - startStep == FitCalibrationSteps / 4) calibration = Stopwatch.StartNew();
            if (fitTo is { } end && step - startStep == FitCalibrationSteps && calibration is not null)
            {
                // The steps after the first quarter (allocations, kernel choices) set the pace.
                double perStep = calibration.Elapsed.TotalSeconds / (FitCalibrationSteps - FitCalibrationSteps / 4);
                long fits = step + (long)Math.Floor((end - DateTime.UtcNow).TotalSeconds / perStep);
                if (fits < totalSteps)
                {
                    totalSteps = (int)Math.Max(step + 1, fits);
                    schedule = CosineSchedule.FromRatio(totalSteps, a.WarmupRatio);
                    _log(string.Create(CultureInfo.InvariantCulture, $"{perStep:F3} s a step: {totalSteps} steps fit the time left; the schedule now ends there"));
                }
            }
            trained += examples;
            if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
            double seconds = clock.Elapsed.TotalSeconds;
            var entry = new TrainingStepLog(step, totalSteps, (double)step / stepsPerEpoch, meanLoss, a.LearningRate * factor, projectorLr * factor,
                norm, means[1] * world / seconds, seconds, (int)Math.Round(means[2] * world), examples);
            steps.Add(entry);
            logs?.Write(entry);
            if (examples == 0)
                _log(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{totalSteps}  epoch {entry.Epoch:F2}  no update: all {entry.SkippedRows} example(s) of the step were skipped"));
            else if (a.LoggingSteps > 0 && (step % a.LoggingSteps == 0 || step == totalSteps))
                _log(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{totalSteps}  epoch {entry.Epoch:F2}  loss {meanLoss:F4}{(_auxiliaryLoss is null ? "" : $"  auxiliary {means[4] / means[3]:F4}")}  lr {entry.LearningRate:E2}  grad_norm {norm:F3}  {entry.TokensPerSecond:N0} tok/s  {seconds:F2} s"));
            // An epoch's worth of steps visits every row: if none could be trained by then, none can.
            if (trained == 0 && (step - startStep >= stepsPerEpoch || step == totalSteps))
                throw new NothingToTrainException(
                    $"No example could be trained: all {steps.Sum(s => s.SkippedRows)} example(s) of {step - startStep} step(s) were skipped", skipped.Rows);
            if (saveEvery > 0 && step % saveEvery == 0 && step < totalSteps && _parallel.IsMain)
                _folder.SaveCheckpoint(step, totalSteps, plan.Manifest, folder =>
                {
                    run.Save(folder);
                    optimizer.Save(Path.Combine(folder, OptimizerFile));
                }, _args);
        }
        string? final = null;
        bool stoppedEarly = step < totalSteps && cancel.IsCancellationRequested && saveWhenCancelled && step > startStep;
        if (stoppedEarly) _log($"stopped at step {step} of {totalSteps} (cancelled): the model is saved as it is, its schedule cut short");
        if ((step >= totalSteps || stoppedEarly) && _parallel.IsMain)
        {
            run.SaveFinal(a.OutputDir, a.MergeLora, _log);
            final = a.OutputDir;
        }
        if (skipped.Rows.Count > 0) _log($"{skipped.Rows.Count} annotation row(s) skipped (listed above).");
        return new TrainingSummary(startStep, step, totalSteps, steps, skipped.Rows, final);
    }

    /// <summary>The row for a global example slot: each epoch visits every row once, in an order fixed by the seed and
    /// the epoch (so a resumed run sees the same rows in the same order).</summary>
    SftRow RowAt(List<SftRow> rows, long slot, int seed)
    {
        int epoch = (int)(slot / rows.Count);
        if (_order is null || _orderEpoch != epoch)
        {
            _order = Enumerable.Range(0, rows.Count).ToArray();
            new Random(seed + epoch).Shuffle(_order);
            _orderEpoch = epoch;
        }
        return rows[_order[slot % rows.Count]];
    }

    /// <summary>Steps whose pace decides how many fit a run's time (<c>fitTo</c>).</summary>
    public const int FitCalibrationSteps = 40;

    int[]? _order;
    int _orderEpoch;
    /// <summary>Steps this <see cref="Run"/> has taken (none: a failure leaves nothing worth keeping).</summary>
    int _stepsTaken;

    /// <summary>checkpoint-N folders with their trainer state, oldest first.</summary>
    public static IEnumerable<(int Step, string Folder)> CompleteCheckpoints(string outputDir) => TrainingRunFolder.CompleteCheckpoints(outputDir);

    /// <summary>Annotation rows that could not be trained on, each reported and kept once.</summary>
    sealed class SkippedRows(Action<string> report)
    {
        readonly List<AnnotationException> _rows = [];
        readonly HashSet<(string, int)> _seen = [];

        public IReadOnlyList<AnnotationException> Rows => _rows;

        public void Add(AnnotationException e)
        {
            if (!_seen.Add((e.File, e.Line))) return;
            _rows.Add(e);
            report($"skipped {e.Message}");
        }
    }
}
