using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Training.Grpo;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm train</c>: the seed's SFT recipe (<see cref="SftTrainer"/>). Arguments come from a JSON config
/// (<c>--config</c>, the seed's argument names as keys) and/or flags of the same names (<c>--learning_rate 7e-6</c>);
/// flags win. <c>--dry-run</c> checks every annotation row and video and exits; <c>--force-new</c> starts over where
/// output_dir holds an earlier run (moved aside, not deleted); <c>--nproc N</c> starts N worker
/// processes, one per GPU, that train data-parallel over NCCL (torchrun's RANK / WORLD_SIZE / LOCAL_RANK variables, which
/// a cluster launcher may set instead).
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "JSON file of training arguments (the seed's names: learning_rate, dataset_use, …)." };
        var dryRun = new Option<bool>("--dry-run") { Description = "Check every annotation row and its video, report problems (file:line: why), train nothing." };
        var nproc = new Option<int>("--nproc") { Description = "Worker processes, one per GPU, data-parallel over NCCL.", DefaultValueFactory = _ => 1 };
        var forceNew = new Option<bool>("--force-new")
        {
            Description = "Start over even if --output_dir holds an earlier run of another model, data or settings (its files are moved into OUTPUT_DIR/earlier-run.bak-TIME, not deleted).",
        };
        var method = new Option<string>("--method")
        {
            Description = "sft (the seed's recipe) or grpo (reinforcement learning with verifiable rewards, TRL's GRPO; its settings carry GRPOConfig's names).",
            DefaultValueFactory = _ => "sft",
        };
        var command = new Command("train", "Fine-tune with the seed's SFT recipe (decoder + merger + connector; vision blocks and VGGT frozen), or with GRPO (--method grpo).")
            { config, dryRun, nproc, forceNew, method };
        var flags = new Dictionary<PropertyInfo, Option<string?>>();
        foreach (var (name, p) in TrainingArguments.Named.Concat(GrpoConfig.Named))
        {
            var option = new Option<string?>("--" + name) { Description = Describe(p) };
            // "--bf16" alone means true, as with the seed's HfArgumentParser.
            if ((Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType) == typeof(bool)) option.Arity = ArgumentArity.ZeroOrOne;
            // The seed's script names the base model --pretrained_model_name_or_path.
            if (name == "model_name_or_path") option.Aliases.Add("--pretrained_model_name_or_path");
            flags[p] = option;
            command.Options.Add(option);
        }
        command.SetAction((parse, cancel) => Task.FromResult(CliSupport.Guard(parse, output =>
        {
            var given = flags.Where(f => parse.GetResult(f.Value) != null).ToDictionary(f => f.Key, f => parse.GetValue(f.Value) ?? "true");
            string chosen = parse.GetValue(method) ?? "sft";
            if (chosen == "grpo") return TrainGrpo(parse.GetValue(config), given, parse.GetValue(dryRun), parse.GetValue(nproc), parse.GetValue(forceNew), output, cancel);
            if (chosen != "sft") throw new ArgumentException($"--method {chosen}: expected sft or grpo.");
            var grpoOnly = given.Keys.Where(p => p.DeclaringType == typeof(GrpoConfig)).Select(p => "--" + p.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name).ToList();
            if (grpoOnly.Count > 0) throw new ArgumentException($"{string.Join(", ", grpoOnly)}: GRPO settings; pass --method grpo.");
            var args = Build(parse.GetValue(config), given);
            args.Validate();
            if (parse.GetValue(dryRun))
            {
                var (rows, errors) = SftTrainer.DryRun(args);
                foreach (var e in errors) output.WriteLine(e.Message);
                output.WriteLine($"{rows - errors.Count} of {rows} annotation rows are usable");
                if (rows == errors.Count) parse.InvocationConfiguration.Error.WriteLine($"error: no annotation row in {args.DatasetUse} can be trained on.");
                return errors.Count == 0 && rows > 0 ? CliSupport.Ok : CliSupport.Failed;
            }
            int workers = parse.GetValue(nproc);
            if (workers < 1) throw new ArgumentException($"--nproc must be 1 or more; got {workers}.");
            if (workers > 1) return Launch(workers, output, cancel);
            using var parallel = DataParallel.FromEnvironment(args.OutputDir);
            var summary = new SftTrainer(args, output.WriteLine, parallel, parse.GetValue(forceNew)).Run(cancel);
            return summary.FinalStep >= summary.TotalSteps ? CliSupport.Ok : CliSupport.Interrupted;
        })));
        return command;
    }

    /// <summary><c>train --method grpo</c>: GRPOConfig's defaults under the config file and flags (<see cref="GrpoTrainer"/>).</summary>
    static int TrainGrpo(string? configFile, IReadOnlyDictionary<PropertyInfo, string> given, bool dryRun, int workers, bool forceNew, TextWriter output,
        CancellationToken cancel)
    {
        if (workers != 1 || Environment.GetEnvironmentVariable("WORLD_SIZE") is { Length: > 0 } w && w != "1")
            throw new ArgumentException("--method grpo trains on one GPU (one process) for now; drop --nproc.");
        var args = Overlay(configFile is null ? GrpoConfig.DefaultTrainingArguments : TrainingArguments.FromJsonFile(configFile, GrpoConfig.DefaultTrainingArguments, GrpoConfig.Named),
            given.Where(g => g.Key.DeclaringType == typeof(TrainingArguments)).ToDictionary());
        var grpo = Overlay(configFile is null ? new GrpoConfig() : GrpoConfig.FromJsonFile(configFile),
            given.Where(g => g.Key.DeclaringType == typeof(GrpoConfig)).ToDictionary());
        args.Validate();
        grpo.Validate();
        if (dryRun)
        {
            var questions = GrpoTrainer.LoadQuestions(args.DatasetUse, args.DataPath);
            output.WriteLine($"{questions.Count} questions, every video found");
            return questions.Count > 0 ? CliSupport.Ok : CliSupport.Failed;
        }
        var summary = new GrpoTrainer(args, grpo, log: output.WriteLine, forceNew: forceNew).Run(cancel);
        return summary.FinalStep >= summary.TotalSteps ? CliSupport.Ok : CliSupport.Interrupted;
    }

    static string Describe(PropertyInfo p)
    {
        object defaults = p.DeclaringType == typeof(GrpoConfig) ? new GrpoConfig() : new TrainingArguments();
        object? value = p.GetValue(defaults);
        return $"{Nullable.GetUnderlyingType(p.PropertyType)?.Name ?? p.PropertyType.Name} (default: {(value is null ? "none" : Convert.ToString(value, CultureInfo.InvariantCulture))})";
    }

    /// <summary>The config file's JSON with the flags written over it, read as <see cref="TrainingArguments"/>. A flag's
    /// value must parse as its argument's type (a finite number, an integer in range, True/False); <c>none</c> unsets an
    /// optional one.</summary>
    internal static TrainingArguments Build(string? configFile, IReadOnlyDictionary<PropertyInfo, string> flags) =>
        Overlay(configFile is null ? new TrainingArguments() : TrainingArguments.FromJsonFile(configFile), flags);

    /// <summary>The flags written over <paramref name="start"/>'s JSON, read back as its type.</summary>
    static T Overlay<T>(T start, IReadOnlyDictionary<PropertyInfo, string> flags)
    {
        if (flags.Count == 0) return start;
        var json = JsonNode.Parse(JsonSerializer.Serialize(start))!.AsObject();
        foreach (var (p, text) in flags)
        {
            string name = p.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name;
            var type = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            if (type != typeof(string) && TrainingArguments.IsNullable(p) && text is "none" or "None" or "null")
            {
                json[name] = null;
                continue;
            }
            string expected = type == typeof(int) ? $"an integer from {int.MinValue} to {int.MaxValue}" : type == typeof(bool) ? "a boolean (True/False)" : "a finite number";
            try
            {
                json[name] = type == typeof(string) ? JsonValue.Create(text)
                    : type == typeof(bool) ? JsonValue.Create(bool.Parse(text))
                    : type == typeof(int) ? JsonValue.Create(int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture))
                    : JsonValue.Create(double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture) is var d && double.IsFinite(d) ? d : throw new OverflowException());
            }
            catch (Exception e) when (e is FormatException or OverflowException)
            {
                throw new ArgumentException($"--{name} {text}: expected {expected}.");
            }
        }
        return json.Deserialize<T>()!;
    }

    /// <summary>
    /// Starts <paramref name="workers"/> copies of this command (without --nproc), each seeing one GPU
    /// (CUDA_VISIBLE_DEVICES) and torchrun's rank variables; waits for all, and stops the others when one fails.
    /// </summary>
    static int Launch(int workers, TextWriter output, CancellationToken cancel)
    {
        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES") is { Length: > 0 } v
            ? v.Split(',') : Enumerable.Range(0, workers).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();
        if (visible.Length < workers) throw new ArgumentException($"--nproc {workers} but only {visible.Length} GPU(s) are visible (CUDA_VISIBLE_DEVICES={string.Join(",", visible)}).");
        var own = Environment.GetCommandLineArgs();
        var forwarded = new List<string>();
        for (int i = 1; i < own.Length; i++)
        {
            if (own[i] == "--nproc") { i++; continue; }
            if (own[i].StartsWith("--nproc=", StringComparison.Ordinal)) continue;
            forwarded.Add(own[i]);
        }
        string host = Environment.ProcessPath!;
        bool viaDotnet = Path.GetFileNameWithoutExtension(host) == "dotnet";
        string runId = Guid.NewGuid().ToString("N");
        var processes = new List<Process>();
        for (int rank = 0; rank < workers; rank++)
        {
            var start = new ProcessStartInfo(host) { UseShellExecute = false };
            if (viaDotnet) start.ArgumentList.Add(own[0]);
            foreach (string a in forwarded) start.ArgumentList.Add(a);
            start.Environment["RANK"] = start.Environment["LOCAL_RANK"] = rank.ToString(CultureInfo.InvariantCulture);
            start.Environment["WORLD_SIZE"] = workers.ToString(CultureInfo.InvariantCulture);
            start.Environment["CUDA_VISIBLE_DEVICES"] = visible[rank];
            start.Environment["SPATIAL_MLLM_RUN_ID"] = runId;
            processes.Add(Process.Start(start)!);
        }
        output.WriteLine($"started {workers} workers (pids {string.Join(", ", processes.Select(p => p.Id))})");
        int failed = 0;
        while (processes.Any(p => !p.HasExited))
        {
            if (cancel.IsCancellationRequested || processes.Any(p => p.HasExited && p.ExitCode != 0))
            {
                foreach (var p in processes.Where(p => !p.HasExited)) p.Kill(entireProcessTree: true);
                break;
            }
            Thread.Sleep(200);
        }
        foreach (var p in processes)
        {
            p.WaitForExit();
            if (p.ExitCode != 0) { failed++; output.WriteLine($"worker pid {p.Id} exited with {p.ExitCode}"); }
        }
        return failed == 0 ? CliSupport.Ok : CliSupport.Failed;
    }
}
