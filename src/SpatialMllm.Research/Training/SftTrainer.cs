using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using SpatialMllm.Research.Checkpoints;

namespace SpatialMllm.Research.Training;

/// <summary>One logged optimizer step.</summary>
public sealed record TrainingStepLog(int Step, int TotalSteps, double Epoch, double Loss, double LearningRate, double ProjectorLearningRate,
    double GradNorm, double TokensPerSecond, double Seconds, int SkippedRows);

/// <summary>What a run did.</summary>
public sealed record TrainingSummary(int StartStep, int FinalStep, int TotalSteps, IReadOnlyList<TrainingStepLog> Steps,
    IReadOnlyList<AnnotationException> SkippedRows, string? FinalModelFolder);

/// <summary>
/// The seed's SFT loop (transformers' Trainer as <c>train_qwen.py</c> configures it) on our model: per optimizer step,
/// <c>gradient_accumulation_steps</c> examples per rank, each loss / accumulation backpropagated, gradients averaged over
/// the ranks, clipped to <c>max_grad_norm</c>, one AdamW update at the cosine schedule's rate. Logs to the console,
/// <c>log.csv</c> and TensorBoard event files (<c>runs/</c>) in output_dir; saves <c>checkpoint-N</c> folders in the
/// released layout plus the optimizer state, and resumes from the newest one. A bad annotation row is reported
/// (file:line: why) and skipped; the run goes on.
/// </summary>
public sealed class SftTrainer
{
    public const string OptimizerFile = "optimizer.safetensors", StateFile = "trainer_state.json", LogFile = "log.csv";

    readonly TrainingArguments _args;
    readonly Action<string> _log;
    readonly DataParallel _parallel;

    public SftTrainer(TrainingArguments args, Action<string>? log = null, DataParallel? parallel = null)
    {
        args.Validate();
        _args = args;
        _parallel = parallel ?? DataParallel.Single;
        _log = _parallel.IsMain ? log ?? Console.WriteLine : _ => { };
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
    /// saving) and saves the final model into output_dir.</summary>
    public TrainingSummary Run(CancellationToken cancel = default)
    {
        var a = _args;
        Directory.CreateDirectory(a.OutputDir);
        var (rows, skipped) = SftAnnotations.Load(a.DatasetUse, a.DataPath);
        foreach (var e in skipped) _log($"skipped {e.Message}");
        if (rows.Count == 0) throw new InvalidDataException($"No usable annotation row in {a.DatasetUse}.");

        string? resume = ResumeFolder();
        var device = a.Device is null ? TorchRuntime.DefaultDevice : TorchRuntime.ParseDevice(a.Device);
        if (device.type == DeviceType.CUDA && _parallel.WorldSize > 1) device = new Device(DeviceType.CUDA, _parallel.DeviceIndex);
        var dtype = (a.Bf16 ?? device.type == DeviceType.CUDA) ? ScalarType.BFloat16 : ScalarType.Float32;
        using var model = SpatialMllmModel.Load(resume ?? a.ModelNameOrPath, device, dtype);
        model.model.GradientCheckpointing = a.GradientCheckpointing;
        var trainable = a.TrainableSet.Apply(model);
        using var optimizer = new AdamW(trainable, new AdamWOptions(a.AdamBeta1, a.AdamBeta2, a.AdamEpsilon, a.WeightDecay));
        int step = 0;
        if (resume != null)
        {
            optimizer.Load(Path.Combine(resume, OptimizerFile));
            step = ReadState(resume).GetProperty("global_step").GetInt32();
            _log($"resumed from {resume} at step {step}");
        }
        var builder = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens, a.DataOptions);

        int microPerStep = a.GradientAccumulationSteps * _parallel.WorldSize;
        int stepsPerEpoch = Math.Max(1, (rows.Count + microPerStep - 1) / microPerStep);
        int totalSteps = a.MaxSteps > 0 ? a.MaxSteps : (int)Math.Ceiling(a.NumTrainEpochs * stepsPerEpoch);
        var schedule = CosineSchedule.FromRatio(totalSteps, a.WarmupRatio);
        int saveEvery = a.SaveSteps <= 0 ? 0 : a.SaveSteps < 1 ? (int)Math.Ceiling(a.SaveSteps * totalSteps) : (int)a.SaveSteps;
        double projectorLr = a.MmProjectorLr is > 0 ? a.MmProjectorLr.Value : a.LearningRate;
        _log($"{rows.Count} examples, {trainable.Count} trainable tensors ({trainable.Sum(p => p.Parameter.NumberOfElements):N0} parameters), " +
             $"{totalSteps} steps of {a.GradientAccumulationSteps} × {_parallel.WorldSize} examples, on {device} {dtype}");

        using var logs = _parallel.IsMain ? new TrainingLogWriter(a.OutputDir, append: resume != null) : null;
        var steps = new List<TrainingStepLog>();
        int startStep = step;
        while (step < totalSteps && !cancel.IsCancellationRequested)
        {
            var clock = Stopwatch.StartNew();
            foreach (var p in trainable) p.Parameter.grad = null;
            double lossSum = 0; long tokens = 0; int counted = 0, skippedNow = 0;
            for (int micro = 0; micro < a.GradientAccumulationSteps; micro++)
            {
                long slot = ((long)step * a.GradientAccumulationSteps + micro) * _parallel.WorldSize + _parallel.Rank;
                var row = RowAt(rows, slot, a.Seed);
                using var scope = torch.NewDisposeScope();
                SftExample example;
                try { example = builder.Build(row); }
                catch (AnnotationException e)
                {
                    skipped.Add(e); skippedNow++;
                    Console.Error.WriteLine($"skipped {e.Message}");
                    continue;
                }
                using (example)
                {
                    var loss = SftObjective.Loss(model, example);
                    (loss / a.GradientAccumulationSteps).backward();
                    lossSum += loss.item<float>();
                    counted++;
                    tokens += example.InputIds.Length;
                }
            }
            var averaged = _parallel.Average(counted == 0 ? 0 : lossSum / counted, tokens, skippedNow);
            _parallel.AverageGradients(trainable);
            double norm = GradientClipping.ClipGlobalNorm(trainable.Select(p => p.Parameter.grad).OfType<Tensor>(), a.MaxGradNorm);
            double factor = schedule.Factor(step);
            optimizer.Update(g => (g == ParameterGroup.Language ? a.LearningRate : projectorLr) * factor);
            step++;
            if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
            double seconds = clock.Elapsed.TotalSeconds;
            var entry = new TrainingStepLog(step, totalSteps, (double)step / stepsPerEpoch, averaged[0], a.LearningRate * factor, projectorLr * factor,
                norm, averaged[1] * _parallel.WorldSize / seconds, seconds, (int)Math.Round(averaged[2] * _parallel.WorldSize));
            steps.Add(entry);
            logs?.Write(entry);
            if (a.LoggingSteps > 0 && (step % a.LoggingSteps == 0 || step == totalSteps))
                _log(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{totalSteps}  epoch {entry.Epoch:F2}  loss {entry.Loss:F4}  lr {entry.LearningRate:E2}  grad_norm {norm:F3}  {entry.TokensPerSecond:N0} tok/s  {seconds:F2} s"));
            if (saveEvery > 0 && step % saveEvery == 0 && step < totalSteps && _parallel.IsMain)
                SaveCheckpoint(model, optimizer, step, totalSteps);
        }
        string? final = null;
        if (step >= totalSteps && _parallel.IsMain)
        {
            CheckpointWriter.Save(model, a.OutputDir);
            final = a.OutputDir;
            _log($"saved the trained model to {a.OutputDir}");
        }
        if (skipped.Count > 0) _log($"{skipped.Count} annotation row(s) skipped (listed above).");
        return new TrainingSummary(startStep, step, totalSteps, steps, skipped, final);
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

    int[]? _order;
    int _orderEpoch;

    void SaveCheckpoint(SpatialMllmModel model, AdamW optimizer, int step, int totalSteps)
    {
        string folder = Path.Combine(_args.OutputDir, $"checkpoint-{step}");
        CheckpointWriter.Save(model, folder);
        optimizer.Save(Path.Combine(folder, OptimizerFile));
        // Written last: its presence marks the checkpoint complete.
        File.WriteAllText(Path.Combine(folder, StateFile), JsonSerializer.Serialize(new { global_step = step, max_steps = totalSteps, args = _args }));
        _log($"saved {folder}");
        if (_args.SaveTotalLimit is int keep)
            foreach (var old in CompleteCheckpoints(_args.OutputDir).SkipLast(keep)) Directory.Delete(old.Folder, recursive: true);
    }

    string? ResumeFolder()
    {
        string r = _args.ResumeFromCheckpoint;
        if (r == "none") return null;
        if (r != "auto")
            return File.Exists(Path.Combine(r, StateFile)) ? r : throw new DirectoryNotFoundException($"resume_from_checkpoint {r}: no {StateFile} there.");
        return CompleteCheckpoints(_args.OutputDir).LastOrDefault().Folder;
    }

    /// <summary>checkpoint-N folders with their trainer state, oldest first.</summary>
    public static IEnumerable<(int Step, string Folder)> CompleteCheckpoints(string outputDir) =>
        !Directory.Exists(outputDir) ? [] :
        Directory.GetDirectories(outputDir, "checkpoint-*")
            .Select(d => (Ok: int.TryParse(Path.GetFileName(d)["checkpoint-".Length..], out int n), Step: n, Folder: d))
            .Where(c => c.Ok && File.Exists(Path.Combine(c.Folder, StateFile)))
            .OrderBy(c => c.Step).Select(c => (c.Step, c.Folder));

    static JsonElement ReadState(string folder)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, StateFile)));
        return doc.RootElement.Clone();
    }
}
