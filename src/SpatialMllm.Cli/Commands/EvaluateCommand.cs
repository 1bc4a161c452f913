using System.CommandLine;
using System.Diagnostics;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Hub;
using SpatialMllm.Research.Lora;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm evaluate vsibench|scanqa</c>: the options of an <see cref="EvaluationJob"/> (which answers, resumably,
/// here or in one worker process per GPU, merges and scores), its progress on the terminal, and how it ended. Each
/// benchmark adds only its own options and its <see cref="EvaluationBenchmark"/>.
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

    /// <summary>What the shared options resolve to, handed to a benchmark to build its part of the run.</summary>
    sealed record BenchmarkInputs(string DataDir, string? DatasetPath, string VideoRoot, AnswererOptions Options);

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
            (parse, inputs) => EvaluationBenchmark.ForVsiBench(
                CliSupport.Locate("VSI-Bench dataset", inputs.DatasetPath, [inputs.DataDir], CliSupport.VsiBenchFileNames), inputs.VideoRoot,
                CliSupport.ParseSubset(parse.GetValue(subset)!), VsiBenchScoringProfile.FromName(parse.GetValue(profile)!),
                inputs.Options with { Sampler = parse.GetValue(sampler) == "space-aware" ? SamplerKind.SpaceAware : SamplerKind.Uniform }));
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
            (parse, inputs) => EvaluationBenchmark.ForScanQa(
                CliSupport.Locate("ScanQA dataset", inputs.DatasetPath, [inputs.DataDir], CliSupport.ScanQaFileNames), inputs.VideoRoot,
                parse.GetValue(meteorJar), inputs.Options));
    }

    /// <summary>One `evaluate` subcommand: the shared options plus <paramref name="benchmarkOptions"/>; in-process, shard or
    /// worker runs, merge, then the metrics file beside the results and the table on the output.</summary>
    static Command CreateBenchmark(string name, string description, string dataDescription, string datasetDescription,
        string videosDescription, string maxNewTokensDescription, int defaultMaxNewTokens, IReadOnlyList<Option> benchmarkOptions,
        Func<ParseResult, BenchmarkInputs, EvaluationBenchmark> benchmark)
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
        var adapter = new Option<string?>("--adapter")
        {
            Description = "A LoRA adapter folder (adapter_config.json + adapter_model.safetensors, as train --lora_r or PEFT save it) applied to --model.",
        };
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

        var command = new Command(name, description) { model, adapter, data, dataset, videos, frames, maxNewTokens, output };
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
            var part = parse.GetValue(shard) is string shardText ? Shard.Parse(shardText) : null;
            bool isWorker = part != null && EvaluationWorkers.JoinParent();
            using var signals = new ShutdownSignals(cancel, isWorker);

            bool isDryRun = parse.GetValue(dryRun);
            string? modelDir = isDryRun ? null
                : HubModels.ResolveFolder(parse.GetValue(model) ?? throw new ArgumentException("--model is required (or --dry-run)."));
            string? adapterDir = parse.GetValue(adapter);
            if (adapterDir != null)
            {
                if (isDryRun) throw new ArgumentException("--adapter needs a model: it cannot go with --dry-run.");
                LoraConfig.Load(adapterDir); // a missing or unsupported adapter is named now, not after the data is read
            }
            string dataDir = parse.GetValue(data)!;
            var job = new EvaluationJob(benchmark(parse, new BenchmarkInputs(dataDir, parse.GetValue(dataset), parse.GetValue(videos) ?? dataDir,
                    new AnswererOptions(parse.GetValue(frames), SamplerKind.Uniform, parse.GetValue(maxNewTokens),
                        SharePrefix: !parse.GetValue(noPrefixSharing), BatchSize: parse.GetValue(batchSize)))),
                resultsPath, modelDir)
            {
                Device = parse.GetValue(device)!,
                Workers = parse.GetValue(workers),
                Shard = part,
                AlsoDone = parse.GetValue(alsoDone) ?? [],
                OnError = parse.GetValue(onError) == "skip" ? OnVideoError.Skip : OnVideoError.Stop,
                ForceNew = parse.GetValue(forceNew),
                DecodeAhead = decodeAhead,
                DryRunSecondsPerAnswer = parse.GetValue(dryRunSeconds),
                AdapterDir = adapterDir,
            };
            var forwarded = ForwardedArguments(parse, command);
            var outcome = job.Run(log, parts => new ProgressOutput(new EvaluationProgressView(parts), log),
                (worker, workerDevice, workerResults) => WorkerCommand(name, forwarded, worker, workerDevice, workerResults, resultsPath), signals.Token);
            switch (outcome)
            {
                case EvaluationOutcome.Interrupted interrupted:
                    log.WriteLine();
                    log.WriteLine($"interrupted{(signals.Received is { } s ? $" ({s})" : "")}; {interrupted.Message}");
                    return signals.InterruptedExitCode;
                case EvaluationOutcome.ShardAnswered answered:
                    log.WriteLine($"shard {answered.Shard} complete: {answered.ResultsPath}. Merge the shards with `spatial-mllm merge`, then `spatial-mllm score {name}`.");
                    return CliSupport.Ok;
                case EvaluationOutcome.Scored scored:
                    log.WriteLine(scored.Score.Table);
                    log.WriteLine($"metrics: {scored.MetricsPath}");
                    if (scored.Skipped.Count > 0)
                        foreach (string line in SkippedQuestions.Describe(scored.Skipped, resultsPath)) log.WriteLine(line);
                    return CliSupport.Ok;
                default:
                    throw new InvalidOperationException($"unknown outcome {outcome}");
            }
        })));
        return command;
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

    /// <summary>The command line of one worker: this CLI again, `evaluate {benchmark} … --shard i/N --device D --out SHARD
    /// --also-done RESULTS`, reporting its progress as events for the parent's combined view.</summary>
    static ProcessStartInfo WorkerCommand(string benchmark, IReadOnlyList<string> forwarded, Shard worker, string device, string workerResults,
        string resultsPath)
    {
        var (program, prefix) = SelfInvocation();
        var start = new ProcessStartInfo(program);
        start.Environment[ProgressOutput.ProtocolVariable] = "protocol";
        foreach (string a in (string[])[.. prefix, "evaluate", benchmark, .. forwarded,
                     "--shard", worker.ToString(), "--device", device, "--out", workerResults, "--also-done", resultsPath])
            start.ArgumentList.Add(a);
        return start;
    }

    /// <summary>How to start this CLI again: the apphost directly, or `dotnet spatial-mllm.dll` when run through dotnet.</summary>
    static (string Program, string[] Prefix) SelfInvocation()
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot tell how this process was started.");
        string self = typeof(EvaluateCommand).Assembly.Location;
        return Path.GetFileNameWithoutExtension(host) == "dotnet" ? (host, [self]) : (host, []);
    }
}
