using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Hub;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm evaluate vsibench|scanqa</c>: answer every question with a model, resumably, then score. With several
/// GPUs (and no --shard) it starts one worker process per GPU, each `--shard i/N --device cuda:i` on its own results
/// file, and merges them; with one device it runs in this process. Each benchmark supplies only its options, its items,
/// its answering settings and its scorer (<see cref="BenchmarkSetup"/>); everything else is shared.
/// </summary>
internal static class EvaluateCommand
{
    public static Command Create()
    {
        var command = new Command("evaluate", "Run a model over a benchmark, resumably, and score it.");
        command.Subcommands.Add(CreateVsiBench());
        command.Subcommands.Add(CreateScanQa());
        return command;
    }

    /// <summary>What the shared options resolve to, handed to a benchmark to build its run.</summary>
    sealed record EvaluationInputs(string DataDir, string? DatasetPath, string VideoRoot, AnswererOptions Options);

    /// <summary>A benchmark's part of a run: the items, how to answer them, and how to score a finished results file.</summary>
    /// <param name="StripAnswers">Store answers Python-stripped (ScanQA's eval does).</param>
    /// <param name="DatasetPath">The annotations file (its hash goes into the run manifest).</param>
    sealed record BenchmarkSetup(IReadOnlyList<EvaluationItem> Items, AnswererOptions Options, string DatasetPath,
        Func<string, MissingPredictions, (string MetricsJson, string Table)> Score, bool StripAnswers = false);

    static Command CreateVsiBench()
    {
        var sampler = new Option<string>("--sampler") { Description = "uniform or space-aware.", DefaultValueFactory = _ => "uniform" }
            .AcceptOnlyFromAmong("uniform", "space-aware");
        var subset = CliSupport.SubsetOption();
        var profile = new Option<string>("--profile") { Description = "Scoring profile for the final metrics.", DefaultValueFactory = _ => "spatial-mllm" }
            .AcceptOnlyFromAmong("spatial-mllm", "official");
        return CreateBenchmark("vsibench", "Answer VSI-Bench with a model and score the answers.",
            dataDescription: "Local VSI-Bench snapshot: test.jsonl or test-*.parquet, and {dataset}/{scene}.mp4 videos.",
            datasetDescription: "Annotations file (default: test.jsonl or the parquet in --data).",
            videosDescription: "Video root if not --data, e.g. a folder of space-aware frame folders.",
            maxNewTokensDescription: "Generation limit (the seed uses 1024).", defaultMaxNewTokens: 1024,
            [sampler, subset, profile],
            (parse, inputs) =>
            {
                string datasetPath = CliSupport.Locate("VSI-Bench dataset", inputs.DatasetPath, [inputs.DataDir], CliSupport.VsiBenchFileNames);
                var questions = VsiBench.Load(datasetPath, CliSupport.ParseSubset(parse.GetValue(subset)!));
                var rules = VsiBenchScoringProfile.FromName(parse.GetValue(profile)!);
                var options = inputs.Options with { Sampler = parse.GetValue(sampler) == "space-aware" ? SamplerKind.SpaceAware : SamplerKind.Uniform };
                return new BenchmarkSetup(VsiBenchVideos.Items(questions, inputs.VideoRoot), options, datasetPath, (results, missing) =>
                {
                    var scores = VsiBench.Score(results, questions, rules, missing);
                    return (scores.ToMetricsJsonText(), scores.FormatTable());
                });
            });
    }

    static Command CreateScanQa()
    {
        var meteorJar = CliSupport.MeteorJarOption();
        return CreateBenchmark("scanqa", "Answer ScanQA val with a model (16 frames resized to 480×640) and score the answers: BLEU-1..4, ROUGE-L, CIDEr, EM, and METEOR when Java and meteor-1.5.jar are there.",
            dataDescription: "Local ScanQA folder: scanqa_val_llava_style.json or ScanQA_v1.0_val.json, and {scene}.mp4 videos.",
            datasetDescription: "Annotations file (default: scanqa_val_llava_style.json or ScanQA_v1.0_val.json in --data).",
            videosDescription: "Folder of the {scene}.mp4 ScanNet videos if not --data.",
            maxNewTokensDescription: "Generation limit (the seed uses 256 for ScanQA).", defaultMaxNewTokens: 256,
            [meteorJar],
            (parse, inputs) =>
            {
                string datasetPath = CliSupport.Locate("ScanQA dataset", inputs.DatasetPath, [inputs.DataDir], CliSupport.ScanQaFileNames);
                var dataset = ScanQa.Load(datasetPath);
                return new BenchmarkSetup(ScanQaVideos.Items(dataset, inputs.VideoRoot), inputs.Options with { ResizedSize = ScanQaVideos.ResizedSize },
                    datasetPath, (results, missing) =>
                    {
                        var scores = ScanQa.Score(results, dataset, missing, parse.GetValue(meteorJar));
                        return (scores.ToMetricsJsonText(), scores.FormatTable());
                    },
                    StripAnswers: true);
            });
    }

    /// <summary>One `evaluate` subcommand: the shared options plus <paramref name="benchmarkOptions"/>; in-process, shard or
    /// worker runs, merge, then the metrics file beside the results and the table on the output.</summary>
    static Command CreateBenchmark(string name, string description, string dataDescription, string datasetDescription,
        string videosDescription, string maxNewTokensDescription, int defaultMaxNewTokens, IReadOnlyList<Option> benchmarkOptions,
        Func<ParseResult, EvaluationInputs, BenchmarkSetup> setup)
    {
        var model = new Option<string?>("--model") { Description = "Checkpoint folder, or owner/name on the Hugging Face hub (downloaded into its cache when missing)." };
        var data = new Option<string>("--data") { Description = dataDescription, Required = true };
        var dataset = new Option<string?>("--dataset") { Description = datasetDescription };
        var videos = new Option<string?>("--videos") { Description = videosDescription };
        var frames = new Option<int>("--frames") { Description = "Frames per video.", DefaultValueFactory = _ => 16 };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = maxNewTokensDescription, DefaultValueFactory = _ => defaultMaxNewTokens };
        var output = new Option<string>("--out") { Description = "Results file (JSON lines, appended; rerun to resume).", DefaultValueFactory = _ => "results.jsonl" };
        var shard = new Option<string?>("--shard") { Description = "i/N: answer only partition i of N (by video), for cluster schedulers; merge the files afterwards." };
        var device = new Option<string>("--device") { Description = "auto (every visible GPU, else CPU), cpu, or cuda:i.", DefaultValueFactory = _ => "auto" };
        var workers = new Option<int?>("--workers") { Description = "Worker processes (default: one per visible GPU with --device auto)." };
        var dryRun = new Option<bool>("--dry-run") { Description = "No model: deterministic placeholder answers, to check data, sharding and resume." };
        var dryRunSeconds = new Option<double>("--dry-run-seconds") { Description = "Seconds each dry-run answer takes.", Hidden = true };
        var alsoDone = new Option<string[]>("--also-done") { Description = "Results files whose ids count as answered (used by the parent for its workers).", Hidden = true };
        var onError = new Option<string>("--on-error")
        {
            Description = "A video that cannot be read: stop (default) the run, or skip its questions (listed in {results}.skipped.jsonl, " +
                          "scored as wrong, tried again on the next run).",
            DefaultValueFactory = _ => "stop",
        }.AcceptOnlyFromAmong("stop", "skip");
        var noPrefixSharing = new Option<bool>("--no-prefix-sharing")
        {
            Description = "Prefill every question's whole prompt instead of sharing a video's prefilled system prompt and visual tokens " +
                          "between its questions (same answers; for comparison).",
        };
        var batchSize = new Option<int>("--batch-size")
        {
            Description = "At most this many questions of a video decoded together (same answers for any size; memory: one KV cache per question).",
            DefaultValueFactory = _ => 32,
        };
        var prefetchVideos = new Option<int>("--prefetch-videos")
        {
            Description = "Videos decoded and preprocessed ahead on worker threads while the device answers the one before (0: decode each in line).",
            DefaultValueFactory = _ => DecodeAheadOptions.Default.Videos,
        };
        var decodeThreads = new Option<int>("--decode-threads")
        {
            Description = "Videos decoded at once when decoding ahead.",
            DefaultValueFactory = _ => DecodeAheadOptions.Default.Threads,
        };
        var forceNew = new Option<bool>("--force-new")
        {
            Description = "Start a new results file even if --out holds answers of another model or settings (the old files are renamed *.bak-TIME, not deleted).",
        };

        var command = new Command(name, description) { model, data, dataset, videos, frames, maxNewTokens, output };
        foreach (var option in benchmarkOptions) command.Options.Add(option);
        foreach (var option in new Option[] { shard, device, workers, onError, forceNew, noPrefixSharing, batchSize, prefetchVideos, decodeThreads, dryRun, dryRunSeconds, alsoDone }) command.Options.Add(option);
        command.SetAction((parse, cancel) => Task.FromResult(CliSupport.Guard(parse, log =>
        {
            string resultsPath = parse.GetValue(output)!;
            if (Directory.Exists(resultsPath))
                throw new ArgumentException($"--out {resultsPath} is a folder; name a results file, e.g. --out {Path.Combine(resultsPath, "results.jsonl")}.");
            if (parse.GetValue(workers) is int w && w < 1) throw new ArgumentException($"--workers must be 1 or more; got {w}.");
            if (parse.GetValue(frames) < 1) throw new ArgumentException($"--frames must be 1 or more; got {parse.GetValue(frames)}.");
            if (parse.GetValue(maxNewTokens) < 1) throw new ArgumentException($"--max-new-tokens must be 1 or more; got {parse.GetValue(maxNewTokens)}.");
            if (parse.GetValue(batchSize) < 1) throw new ArgumentException($"--batch-size must be 1 or more; got {parse.GetValue(batchSize)}.");
            var decodeAhead = new DecodeAheadOptions(parse.GetValue(prefetchVideos), parse.GetValue(decodeThreads));
            decodeAhead.Validate();
            string? parentPid = parse.GetValue(shard) != null ? Environment.GetEnvironmentVariable(ParentPidVariable) : null;
            bool isWorker = parentPid != null;
            if (isWorker && !PosixProcess.DieWithParent(int.Parse(parentPid!, CultureInfo.InvariantCulture)))
                throw new InvalidOperationException("the parent evaluate process is gone; this worker stops.");
            using var signals = new ShutdownSignals(cancel, isWorker);
            using var resultsLock = ResultsFileLock.Acquire(resultsPath, $"evaluate {name}");

            string dataDir = parse.GetValue(data)!;
            var run = setup(parse, new EvaluationInputs(dataDir, parse.GetValue(dataset), parse.GetValue(videos) ?? dataDir,
                new AnswererOptions(parse.GetValue(frames), SamplerKind.Uniform, parse.GetValue(maxNewTokens),
                    SharePrefix: !parse.GetValue(noPrefixSharing), BatchSize: parse.GetValue(batchSize))));
            bool isDryRun = parse.GetValue(dryRun);
            string? modelDir = parse.GetValue(model);
            if (modelDir == null && !isDryRun) throw new ArgumentException("--model is required (or --dry-run).");
            if (modelDir != null && !isDryRun) modelDir = HubModels.ResolveFolder(modelDir);
            var errorPolicy = parse.GetValue(onError) == "skip" ? OnVideoError.Skip : OnVideoError.Stop;
            RunManifest Manifest(string deviceName) => ResultsManifest.Describe(name, isDryRun ? null : modelDir, run.Options,
                deviceName.StartsWith("cuda", StringComparison.Ordinal) ? "bfloat16" : "float32", run.StripAnswers, run.DatasetPath);
            IVideoAnswerer Answerer(string deviceName)
            {
                var answerer = isDryRun ? new DryRunAnswerer(parse.GetValue(dryRunSeconds)) : AnswererFactory.Create(modelDir!, deviceName, run.Options);
                return run.StripAnswers ? new StrippedAnswers(answerer) : answerer;
            }

            if (parse.GetValue(shard) is string shardText)
            {
                var part = Shard.Parse(shardText);
                string deviceName = parse.GetValue(device) == "auto" ? "cpu" : parse.GetValue(device)!;
                Manifest(deviceName).Adopt(resultsPath, parse.GetValue(forceNew), log);
                var (status, _) = RunInProcess(part.Select(run.Items), () => Answerer(deviceName), modelDir, resultsPath, parse.GetValue(alsoDone) ?? [],
                    errorPolicy, decodeAhead, log, signals);
                if (status == CliSupport.Ok) log.WriteLine($"shard {part} complete: {resultsPath}. Merge the shards with `spatial-mllm merge`, then `spatial-mllm score {name}`.");
                return status;
            }

            int gpus = parse.GetValue(device) == "auto" && !isDryRun ? VisibleGpus() : 0;
            int workerCount = parse.GetValue(workers) ?? Math.Max(1, gpus);
            IReadOnlyList<SkippedQuestion> skipped;
            if (workerCount > 1)
            {
                var shardPaths = Enumerable.Range(0, workerCount)
                    .Select(i => $"{Path.ChangeExtension(resultsPath, null)}.shard-{i}-of-{workerCount}.jsonl").ToList();
                Manifest(gpus > 0 ? "cuda:0" : "cpu").Adopt(resultsPath, parse.GetValue(forceNew), log, alsoMoveAside: EarlierShardFiles(resultsPath));
                var forwarded = ForwardedArguments(parse, command);
                int failures = RunWorkers(name, workerCount, gpus, shardPaths, resultsPath, forwarded, log, signals.Token);
                if (signals.Token.IsCancellationRequested)
                {
                    log.WriteLine($"interrupted; the worker files {Path.ChangeExtension(resultsPath, null)}.shard-*-of-{workerCount}.jsonl keep every finished answer. " +
                                  "Rerun the same command to resume.");
                    return signals.InterruptedExitCode;
                }
                if (failures > 0)
                {
                    parse.InvocationConfiguration.Error.WriteLine($"error: {failures} worker(s) failed; their shard files keep what they answered. Rerun the same command to resume.");
                    return CliSupport.Failed;
                }
                var report = ResultsMerger.Merge([.. new[] { resultsPath }.Where(File.Exists), .. shardPaths], resultsPath);
                if (report.ConflictingIds.Count > 0)
                    throw new InvalidOperationException($"{report.ConflictingIds.Count} id(s) answered differently by different workers, e.g. {string.Join(", ", report.ConflictingIds.Take(5))}.");
                skipped = [.. shardPaths.SelectMany(p => SkippedQuestions.Read(SkippedQuestions.PathFor(p)))];
                string skippedPath = SkippedQuestions.PathFor(resultsPath);
                if (File.Exists(skippedPath)) File.Delete(skippedPath);
                if (skipped.Count > 0) SkippedQuestions.Append(skippedPath, skipped);
                foreach (string path in shardPaths.SelectMany(WorkerFiles)) File.Delete(path);
                log.WriteLine($"merged {workerCount} worker results: {report.Records} answers → {resultsPath}");
            }
            else
            {
                string deviceName = parse.GetValue(device) is "auto" or null ? (gpus > 0 ? "cuda:0" : "cpu") : parse.GetValue(device)!;
                Manifest(deviceName).Adopt(resultsPath, parse.GetValue(forceNew), log);
                (int status, skipped) = RunInProcess(run.Items, () => Answerer(deviceName), modelDir, resultsPath, parse.GetValue(alsoDone) ?? [],
                    errorPolicy, decodeAhead, log, signals);
                if (status != CliSupport.Ok) return status;
            }

            var (metricsJson, table) = run.Score(resultsPath, skipped.Count > 0 ? MissingPredictions.CountAsWrong : MissingPredictions.Error);
            string metricsPath = CliSupport.MetricsPathFor(resultsPath);
            File.WriteAllText(metricsPath, metricsJson);
            log.WriteLine(table);
            log.WriteLine($"metrics: {metricsPath}");
            if (skipped.Count > 0) ReportSkipped(skipped, resultsPath, log);
            return CliSupport.Ok;
        })));
        return command;
    }

    /// <summary>Environment variable that marks a worker process and names its parent (so it can die with it).</summary>
    const string ParentPidVariable = "SPATIAL_MLLM_PARENT_PID";

    /// <summary>
    /// Loads the answerer (the model) and answers the items in this process, with the progress view on
    /// <paramref name="log"/>. Cancellation (a signal) stops after the video's batch of answers in progress, which is flushed.
    /// </summary>
    static (int Status, IReadOnlyList<SkippedQuestion> Skipped) RunInProcess(IReadOnlyList<EvaluationItem> items, Func<IVideoAnswerer> createAnswerer,
        string? modelDir, string resultsPath, IReadOnlyList<string> alsoDone, OnVideoError onError, DecodeAheadOptions decodeAhead, TextWriter log,
        ShutdownSignals signals)
    {
        var progress = new ProgressOutput(new EvaluationProgressView(parts: 1), log);
        try
        {
            progress.SetActivity(0, modelDir is null ? "starting the dry run" : $"loading model {modelDir}");
            using var answerer = createAnswerer();
            var summary = EvaluationRunner.Run(items, answerer, resultsPath, progress.Log, p => progress.Report(0, p), alsoDone, signals.Token, onError,
                decodeAhead);
            return (CliSupport.Ok, summary.Skipped);
        }
        catch (OperationCanceledException)
        {
            progress.Dispose();
            log.WriteLine();
            log.WriteLine($"interrupted{(signals.Received is { } s ? $" ({s})" : "")}; {resultsPath} keeps every finished answer. Rerun the same command to resume.");
            return (signals.InterruptedExitCode, []);
        }
        finally
        {
            progress.Dispose();
        }
    }

    /// <summary>The list at the end of a run with skipped videos.</summary>
    static void ReportSkipped(IReadOnlyList<SkippedQuestion> skipped, string resultsPath, TextWriter log)
    {
        var videos = skipped.GroupBy(q => q.Video).ToList();
        log.WriteLine($"{skipped.Count} question(s) of {videos.Count} unreadable video(s) were skipped and count as wrong in these metrics " +
                      $"(listed in {SkippedQuestions.PathFor(resultsPath)}; the next run tries them again):");
        foreach (var video in videos) log.WriteLine($"  {video.Key} ({video.Count()} question(s)): {video.First().Reason}");
    }

    /// <summary>A worker's results file and its sidecars (lock, manifest, skipped list).</summary>
    static IEnumerable<string> WorkerFiles(string shardPath) =>
        new[] { shardPath, ResultsFileLock.LockPathFor(shardPath), ResultsManifest.PathFor(shardPath), SkippedQuestions.PathFor(shardPath) }.Where(File.Exists);

    /// <summary>Worker files an earlier, interrupted run left beside <paramref name="resultsPath"/> (any worker count).</summary>
    static IEnumerable<string> EarlierShardFiles(string resultsPath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(resultsPath))!;
        string stem = Path.GetFileNameWithoutExtension(resultsPath);
        return Directory.EnumerateFiles(folder, $"{stem}.shard-*-of-*.jsonl").SelectMany(WorkerFiles).ToList();
    }

    /// <summary>GPUs this process can see; 0 when libtorch has no CUDA (the CPU build) or cannot load.</summary>
    static int VisibleGpus()
    {
        try { return TorchSharp.torch.cuda.is_available() ? TorchSharp.torch.cuda.device_count() : 0; }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException) { return 0; }
    }

    /// <summary>The options the user gave, minus those the parent sets per worker (and --force-new, which the parent applies).</summary>
    static List<string> ForwardedArguments(ParseResult parse, Command command)
    {
        string[] perWorker = ["--shard", "--device", "--workers", "--out", "--also-done", "--force-new"];
        var args = new List<string>();
        foreach (var option in command.Options)
        {
            if (perWorker.Contains(option.Name) || parse.GetResult(option) is not { Implicit: false } result) continue;
            foreach (var token in result.Tokens) { args.Add(option.Name); args.Add(token.Value); }
            if (result.Tokens.Count == 0) args.Add(option.Name);
        }
        return args;
    }

    /// <summary>Starts `evaluate {benchmark} … --shard i/N --device cuda:i` per worker (cpu when there are no GPUs), relays their
    /// output line by line with a prefix, and returns how many failed (or were stopped). Workers die with this process (parent-death signal,
    /// set by each worker on start); a cancellation (SIGINT/SIGTERM here) is passed on as SIGTERM, so each worker finishes
    /// its batch of answers in progress, flushes and exits. (The kernel ties the parent-death signal to the thread that started the
    /// worker: this one, which waits below until every worker has exited.)</summary>
    static int RunWorkers(string benchmark, int count, int gpus, IReadOnlyList<string> shardPaths, string resultsPath,
        IReadOnlyList<string> forwarded, TextWriter log, CancellationToken cancel)
    {
        var (program, prefix) = SelfInvocation();
        var processes = new List<Process>();
        using var progress = new ProgressOutput(new EvaluationProgressView(count), log);
        for (int i = 0; i < count; i++)
        {
            var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            start.Environment[ParentPidVariable] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            start.Environment[ProgressOutput.ProtocolVariable] = "protocol"; // workers report progress events for the combined view
            foreach (string a in prefix) start.ArgumentList.Add(a);
            foreach (string a in (string[])["evaluate", benchmark, .. forwarded,
                         "--shard", $"{i}/{count}", "--device", gpus > 0 ? $"cuda:{i % gpus}" : "cpu",
                         "--out", shardPaths[i], "--also-done", resultsPath])
                start.ArgumentList.Add(a);
            var process = new Process { StartInfo = start };
            string tag = $"[worker {i}] ";
            int part = i;
            process.OutputDataReceived += (_, e) => { if (e.Data != null) progress.Relay(part, tag, e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data != null) progress.Log.WriteLine(tag + e.Data); };
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            processes.Add(process);
        }
        using (cancel.Register(() => { foreach (var p in processes) if (!p.HasExited) PosixProcess.Signal(p.Id, PosixProcess.SigTerm); }))
            foreach (var p in processes) p.WaitForExit();
        int failures = processes.Count(p => p.ExitCode != 0);
        foreach (var p in processes) p.Dispose();
        return failures;
    }

    /// <summary>How to start this CLI again: the apphost directly, or `dotnet spatial-mllm.dll` when run through dotnet.</summary>
    static (string Program, string[] Prefix) SelfInvocation()
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot tell how this process was started.");
        string self = typeof(EvaluateCommand).Assembly.Location;
        return Path.GetFileNameWithoutExtension(host) == "dotnet" ? (host, [self]) : (host, []);
    }
}
