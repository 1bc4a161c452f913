using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm evaluate vsibench</c>: answer every question with a model, resumably, then score. With several GPUs
/// (and no --shard) it starts one worker process per GPU, each `--shard i/N --device cuda:i` on its own results file,
/// and merges them; with one device it runs in this process.
/// </summary>
internal static class EvaluateCommand
{
    public static Command Create()
    {
        var command = new Command("evaluate", "Run a model over a benchmark, resumably, and score it.");
        command.Subcommands.Add(CreateVsiBench());
        return command;
    }

    static Command CreateVsiBench()
    {
        var model = new Option<string?>("--model") { Description = "Checkpoint folder." };
        var data = new Option<string>("--data") { Description = "Local VSI-Bench snapshot: test.jsonl or test-*.parquet, and {dataset}/{scene}.mp4 videos.", Required = true };
        var dataset = new Option<string?>("--dataset") { Description = "Annotations file (default: test.jsonl or the parquet in --data)." };
        var videos = new Option<string?>("--videos") { Description = "Video root if not --data, e.g. a folder of space-aware frame folders." };
        var frames = new Option<int>("--frames") { Description = "Frames per video.", DefaultValueFactory = _ => 16 };
        var sampler = new Option<string>("--sampler") { Description = "uniform or space-aware.", DefaultValueFactory = _ => "uniform" }
            .AcceptOnlyFromAmong("uniform", "space-aware");
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "Generation limit (the seed uses 1024).", DefaultValueFactory = _ => 1024 };
        var output = new Option<string>("--out") { Description = "Results file (JSON lines, appended; rerun to resume).", DefaultValueFactory = _ => "results.jsonl" };
        var subset = CliSupport.SubsetOption();
        var profile = new Option<string>("--profile") { Description = "Scoring profile for the final metrics.", DefaultValueFactory = _ => "spatial-mllm" }
            .AcceptOnlyFromAmong("spatial-mllm", "official");
        var shard = new Option<string?>("--shard") { Description = "i/N: answer only partition i of N (by video), for cluster schedulers; merge the files afterwards." };
        var device = new Option<string>("--device") { Description = "auto (every visible GPU, else CPU), cpu, or cuda:i.", DefaultValueFactory = _ => "auto" };
        var workers = new Option<int?>("--workers") { Description = "Worker processes (default: one per visible GPU with --device auto)." };
        var dryRun = new Option<bool>("--dry-run") { Description = "No model: deterministic placeholder answers, to check data, sharding and resume." };
        var dryRunSeconds = new Option<double>("--dry-run-seconds") { Description = "Seconds each dry-run answer takes.", Hidden = true };
        var alsoDone = new Option<string[]>("--also-done") { Description = "Results files whose ids count as answered (used by the parent for its workers).", Hidden = true };

        var command = new Command("vsibench", "Answer VSI-Bench with a model and score the answers.")
        {
            model, data, dataset, videos, frames, sampler, maxNewTokens, output, subset, profile, shard, device, workers, dryRun, dryRunSeconds, alsoDone,
        };
        command.SetAction((parse, cancel) => Task.FromResult(CliSupport.Guard(parse, log =>
        {
            string dataDir = parse.GetValue(data)!;
            string datasetPath = CliSupport.Locate("VSI-Bench dataset", parse.GetValue(dataset), [dataDir], CliSupport.VsiBenchFileNames);
            var questions = VsiBench.Load(datasetPath, CliSupport.ParseSubset(parse.GetValue(subset)!));
            var items = VsiBenchVideos.Items(questions, parse.GetValue(videos) ?? dataDir);
            string resultsPath = parse.GetValue(output)!;
            bool isDryRun = parse.GetValue(dryRun);
            string? modelDir = parse.GetValue(model);
            if (modelDir == null && !isDryRun) throw new ArgumentException("--model is required (or --dry-run).");
            var options = new AnswererOptions(parse.GetValue(frames),
                parse.GetValue(sampler) == "space-aware" ? SamplerKind.SpaceAware : SamplerKind.Uniform, parse.GetValue(maxNewTokens));

            if (parse.GetValue(shard) is string shardText)
            {
                var part = Shard.Parse(shardText);
                string deviceName = parse.GetValue(device) == "auto" ? "cpu" : parse.GetValue(device)!;
                int status = RunInProcess(part.Select(items), Answerer(modelDir, deviceName, options, isDryRun, parse.GetValue(dryRunSeconds)),
                    resultsPath, parse.GetValue(alsoDone) ?? [], log, cancel);
                if (status == CliSupport.Ok) log.WriteLine($"shard {part} complete: {resultsPath}. Merge the shards with `spatial-mllm merge`, then `spatial-mllm score vsibench`.");
                return status;
            }

            int gpus = parse.GetValue(device) == "auto" && !isDryRun ? VisibleGpus() : 0;
            int workerCount = parse.GetValue(workers) ?? Math.Max(1, gpus);
            if (workerCount > 1)
            {
                var shardPaths = Enumerable.Range(0, workerCount)
                    .Select(i => $"{Path.ChangeExtension(resultsPath, null)}.shard-{i}-of-{workerCount}.jsonl").ToList();
                var forwarded = ForwardedArguments(parse, command);
                int failures = RunWorkers(workerCount, gpus, shardPaths, resultsPath, forwarded, log, cancel);
                if (failures > 0)
                {
                    parse.InvocationConfiguration.Error.WriteLine($"error: {failures} worker(s) failed; their shard files keep what they answered. Rerun the same command to resume.");
                    return CliSupport.Failed;
                }
                var report = ResultsMerger.Merge([.. new[] { resultsPath }.Where(File.Exists), .. shardPaths], resultsPath);
                if (report.ConflictingIds.Count > 0)
                    throw new InvalidOperationException($"{report.ConflictingIds.Count} id(s) answered differently by different workers, e.g. {string.Join(", ", report.ConflictingIds.Take(5))}.");
                foreach (string path in shardPaths) File.Delete(path);
                log.WriteLine($"merged {workerCount} worker results: {report.Records} answers → {resultsPath}");
            }
            else
            {
                string deviceName = parse.GetValue(device) is "auto" or null ? (gpus > 0 ? "cuda:0" : "cpu") : parse.GetValue(device)!;
                int status = RunInProcess(items, Answerer(modelDir, deviceName, options, isDryRun, parse.GetValue(dryRunSeconds)),
                    resultsPath, parse.GetValue(alsoDone) ?? [], log, cancel);
                if (status != CliSupport.Ok) return status;
            }

            var scores = VsiBench.Score(resultsPath, questions, VsiBenchScoringProfile.FromName(parse.GetValue(profile)!));
            string metricsPath = CliSupport.MetricsPathFor(resultsPath);
            File.WriteAllText(metricsPath, scores.ToMetricsJsonText());
            log.WriteLine(scores.FormatTable());
            log.WriteLine($"metrics: {metricsPath}");
            return CliSupport.Ok;
        })));
        return command;
    }

    static IVideoAnswerer Answerer(string? modelDir, string device, AnswererOptions options, bool dryRun, double dryRunSeconds) =>
        dryRun ? new DryRunAnswerer(dryRunSeconds) : AnswererFactory.Create(modelDir!, device, options);

    static int RunInProcess(IReadOnlyList<EvaluationItem> items, IVideoAnswerer answerer, string resultsPath,
        IReadOnlyList<string> alsoDone, TextWriter log, CancellationToken cancel)
    {
        using (answerer)
        {
            var progress = new ConsoleProgress(log, interactive: ReferenceEquals(log, Console.Out) && !Console.IsOutputRedirected);
            try
            {
                EvaluationRunner.Run(items, answerer, resultsPath, log, progress.Report, alsoDone, cancel);
                return CliSupport.Ok;
            }
            catch (OperationCanceledException)
            {
                log.WriteLine();
                log.WriteLine($"interrupted; {resultsPath} keeps every finished answer. Rerun the same command to resume.");
                return CliSupport.Interrupted;
            }
        }
    }

    /// <summary>GPUs this process can see; 0 when libtorch has no CUDA (the CPU build) or cannot load.</summary>
    static int VisibleGpus()
    {
        try { return TorchSharp.torch.cuda.is_available() ? TorchSharp.torch.cuda.device_count() : 0; }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException) { return 0; }
    }

    /// <summary>The options the user gave, minus those the parent sets per worker.</summary>
    static List<string> ForwardedArguments(ParseResult parse, Command command)
    {
        string[] perWorker = ["--shard", "--device", "--workers", "--out", "--also-done"];
        var args = new List<string>();
        foreach (var option in command.Options)
        {
            if (perWorker.Contains(option.Name) || parse.GetResult(option) is not { Implicit: false } result) continue;
            foreach (var token in result.Tokens) { args.Add(option.Name); args.Add(token.Value); }
            if (result.Tokens.Count == 0) args.Add(option.Name);
        }
        return args;
    }

    /// <summary>Starts `evaluate vsibench … --shard i/N --device cuda:i` per worker (cpu when there are no GPUs), relays their
    /// output line by line with a prefix, and returns how many failed. Ctrl+C stops them all.</summary>
    static int RunWorkers(int count, int gpus, IReadOnlyList<string> shardPaths, string resultsPath, IReadOnlyList<string> forwarded,
        TextWriter log, CancellationToken cancel)
    {
        var (program, prefix) = SelfInvocation();
        var processes = new List<Process>();
        for (int i = 0; i < count; i++)
        {
            var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in prefix) start.ArgumentList.Add(a);
            foreach (string a in (string[])["evaluate", "vsibench", .. forwarded,
                         "--shard", $"{i}/{count}", "--device", gpus > 0 ? $"cuda:{i % gpus}" : "cpu",
                         "--out", shardPaths[i], "--also-done", resultsPath])
                start.ArgumentList.Add(a);
            var process = new Process { StartInfo = start };
            string tag = $"[worker {i}] ";
            process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (log) log.WriteLine(tag + e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (log) log.WriteLine(tag + e.Data); };
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            processes.Add(process);
        }
        using (cancel.Register(() => { foreach (var p in processes) if (!p.HasExited) p.Kill(entireProcessTree: true); }))
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
