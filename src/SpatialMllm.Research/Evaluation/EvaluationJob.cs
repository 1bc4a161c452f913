using SpatialMllm.Research.Runs;

namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// One evaluation run as <c>evaluate</c> describes it: answer every question of <paramref name="Benchmark"/> into
/// <paramref name="ResultsPath"/>, resumably, then score it. With several GPUs (and no <see cref="Shard"/>) it starts one
/// worker process per GPU, each on its own shard and results file, and merges them; with one device it answers in this
/// process; with a <see cref="Shard"/> it answers that part only (a cluster job's task), to be merged later.
/// </summary>
/// <param name="ModelDir">The checkpoint; null: a dry run (<see cref="DryRunAnswerer"/>, no model).</param>
internal sealed record EvaluationJob(EvaluationBenchmark Benchmark, string ResultsPath, string? ModelDir)
{
    /// <summary>"auto" (every visible GPU, else the CPU), "cpu" or "cuda:i".</summary>
    public string Device { get; init; } = "auto";

    /// <summary>Worker processes; null: one per visible GPU with <see cref="Device"/> "auto".</summary>
    public int? Workers { get; init; }

    public Shard? Shard { get; init; }

    /// <summary>Results files whose ids count as answered (a worker's parent names its own).</summary>
    public IReadOnlyList<string> AlsoDone { get; init; } = [];

    public OnVideoError OnError { get; init; } = OnVideoError.Stop;

    /// <summary>Start over even if the results file holds another run's answers (the old files are kept as backups).</summary>
    public bool ForceNew { get; init; }

    public DecodeAheadOptions DecodeAhead { get; init; } = DecodeAheadOptions.Default;

    /// <summary>Seconds each dry-run answer takes (to rehearse a run's pace).</summary>
    public double DryRunSecondsPerAnswer { get; init; }

    /// <summary>A LoRA adapter folder (PEFT's layout) applied to the model before answering; null: none.</summary>
    public string? AdapterDir { get; init; }

    /// <summary>
    /// Runs the job: holds the results file's lock, checks or writes its run manifest, answers (here, or in workers that
    /// <paramref name="workerCommand"/> starts: the same job with <see cref="Shard"/>, the device, the shard's results file
    /// and <see cref="AlsoDone"/> set to this one's results), merges, and scores into <c>{results}.metrics.json</c>.
    /// <paramref name="cancel"/> stops it after the batch of answers in progress, which is flushed.
    /// </summary>
    /// <param name="openDisplay">The progress display for a number of parts (1 in process, one per worker).</param>
    public EvaluationOutcome Run(TextWriter log, Func<int, IEvaluationDisplay> openDisplay,
        Func<Shard, string, string, System.Diagnostics.ProcessStartInfo> workerCommand, CancellationToken cancel)
    {
        using var resultsLock = ResultsFileLock.Acquire(ResultsPath, $"evaluate {Benchmark.Name}");
        if (Shard is { } part)
        {
            string device = Device == "auto" ? "cpu" : Device;
            Manifest(device).Adopt(ResultsPath, ForceNew, log);
            var (interrupted, _) = AnswerHere(part.Select(Benchmark.Items), device, openDisplay, cancel);
            return (EvaluationOutcome?)interrupted ?? new EvaluationOutcome.ShardAnswered(part, ResultsPath);
        }

        int gpus = Device == "auto" && ModelDir != null ? EvaluationWorkers.VisibleGpus() : 0;
        int workerCount = Workers ?? Math.Max(1, gpus);
        IReadOnlyList<SkippedQuestion> skipped;
        if (workerCount > 1)
        {
            var shards = Enumerable.Range(0, workerCount).Select(i => new Shard(i, workerCount)).ToList();
            var shardPaths = shards.Select(s => EvaluationWorkers.ShardPath(ResultsPath, s)).ToList();
            Manifest(gpus > 0 ? "cuda:0" : "cpu").Adopt(ResultsPath, ForceNew, log, alsoMoveAside: EvaluationWorkers.EarlierFiles(ResultsPath));
            int failures;
            using (var display = openDisplay(workerCount))
                failures = EvaluationWorkers.Run(workerCount, gpus,
                    (shard, device) => workerCommand(shard, device, shardPaths[shard.Index]), display, cancel);
            if (cancel.IsCancellationRequested)
                return new EvaluationOutcome.Interrupted(
                    $"the worker files {Path.ChangeExtension(ResultsPath, null)}.shard-*-of-{workerCount}.jsonl keep every finished answer. {RerunToResume}");
            if (failures > 0)
                throw new InvalidOperationException($"{failures} worker(s) failed; their shard files keep what they answered. {RerunToResume}");
            var report = ResultsMerger.Merge([.. new[] { ResultsPath }.Where(File.Exists), .. shardPaths], ResultsPath);
            if (report.ConflictingIds.Count > 0)
                throw new InvalidOperationException($"{report.ConflictingIds.Count} id(s) answered differently by different workers, e.g. {string.Join(", ", report.ConflictingIds.Take(5))}.");
            skipped = [.. shardPaths.SelectMany(p => SkippedQuestions.Read(SkippedQuestions.PathFor(p)))];
            string skippedPath = SkippedQuestions.PathFor(ResultsPath);
            if (File.Exists(skippedPath)) File.Delete(skippedPath);
            if (skipped.Count > 0) SkippedQuestions.Append(skippedPath, skipped);
            foreach (string path in shardPaths.SelectMany(EvaluationWorkers.Files)) File.Delete(path);
            log.WriteLine($"merged {workerCount} worker results: {report.Records} answers → {ResultsPath}");
        }
        else
        {
            string device = Device == "auto" ? (gpus > 0 ? "cuda:0" : "cpu") : Device;
            Manifest(device).Adopt(ResultsPath, ForceNew, log);
            (var interrupted, skipped) = AnswerHere(Benchmark.Items, device, openDisplay, cancel);
            if (interrupted != null) return interrupted;
        }

        var score = Benchmark.Score(ResultsPath, skipped.Count > 0 ? MissingPredictions.CountAsWrong : MissingPredictions.Error);
        string metricsPath = MetricsPathFor(ResultsPath);
        File.WriteAllText(metricsPath, score.MetricsJson);
        return new EvaluationOutcome.Scored(score, metricsPath, skipped);
    }

    const string RerunToResume = "Rerun the same command to resume.";

    /// <summary>The metrics beside a results file: results.jsonl → results.metrics.json.</summary>
    static string MetricsPathFor(string resultsPath) => Path.ChangeExtension(resultsPath, null) + ".metrics.json";

    RunManifest Manifest(string device) => ResultsManifest.Describe(Benchmark.Name, ModelDir, Benchmark.Options,
        device.StartsWith("cuda", StringComparison.Ordinal) ? "bfloat16" : "float32", Benchmark.StripAnswers, Benchmark.DatasetPath, AdapterDir);

    /// <summary>Loads the answerer (the model) and answers <paramref name="items"/> in this process.</summary>
    (EvaluationOutcome.Interrupted? Interrupted, IReadOnlyList<SkippedQuestion> Skipped) AnswerHere(IReadOnlyList<EvaluationItem> items, string device,
        Func<int, IEvaluationDisplay> openDisplay, CancellationToken cancel)
    {
        using var display = openDisplay(1);
        try
        {
            display.SetActivity(0, ModelDir is null ? "starting the dry run" : $"loading model {ModelDir}");
            using IVideoAnswerer answerer = ModelDir is null ? new DryRunAnswerer(DryRunSecondsPerAnswer) : ModelAnswerer.Load(ModelDir, device, Benchmark.Options, AdapterDir);
            var summary = EvaluationRunner.Run(items, answerer, ResultsPath, display.Log, p => display.Report(0, p), AlsoDone, cancel, OnError,
                DecodeAhead, Benchmark.StripAnswers);
            return (null, summary.Skipped);
        }
        catch (OperationCanceledException)
        {
            return (new EvaluationOutcome.Interrupted($"{ResultsPath} keeps every finished answer. {RerunToResume}"), []);
        }
    }
}
