using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Runs;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// The <see cref="RunManifest"/> of a training run, <c>run.json</c> in output_dir and in each <c>checkpoint-N</c>: the base
/// model (folder and a content fingerprint of its config and weights), the annotation files' hash, every argument that
/// changes what is learned (learning rates, schedule, steps, data sampling, trainable set, dtype, world size), the code
/// version. Arguments that cannot change the result stay out (output_dir, save and logging steps, gradient
/// checkpointing, device), so a run resumes with any of them.
/// </summary>
internal static class TrainingRunManifest
{
    public const string FileName = "run.json";

    /// <summary>The folder <c>--force-new</c> moves an earlier run into: <c>earlier-run.bak-TIME</c> inside output_dir.</summary>
    const string BackupPrefix = "earlier-run.bak-";

    /// <summary>Fields that are reported when they differ but do not stop a resume.</summary>
    static readonly string[] Informational = ["code_version", "created", "dataset.files", "data_path"];

    /// <summary>Arguments recorded otherwise (the model and data by content, bf16 as the dtype) or that cannot change
    /// what is learned.</summary>
    static readonly HashSet<string> NotRecorded =
    [
        "model_name_or_path", "dataset_use", "data_path", "bf16", "output_dir", "save_steps", "save_total_limit", "logging_steps",
        "gradient_checkpointing", "resume_from_checkpoint", "device", "merge_lora", "decoded_video_cache",
    ];

    /// <summary>LoRA's settings, recorded for LoRA runs only (a run without LoRA records what it did before LoRA existed).</summary>
    static readonly HashSet<string> LoraOnly = ["lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_rslora"];

    public static RunManifest Describe(TrainingArguments args, int worldSize, ScalarType dtype)
    {
        var fields = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, property) in TrainingArguments.Named)
            if (!NotRecorded.Contains(name) && (args.LoraR > 0 || !LoraOnly.Contains(name))) fields[name] = Format(property.GetValue(args));
        var (config, weights) = RunManifest.ModelFingerprint(args.ModelNameOrPath);
        fields["model.folder"] = Path.GetFullPath(args.ModelNameOrPath);
        fields["model.config_sha256"] = config;
        fields["model.weights_sha256"] = weights;
        var files = SftAnnotations.Files(args.DatasetUse);
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            foreach (var (file, percent) in files) hash.AppendData(Encoding.UTF8.GetBytes($"{RunManifest.Sha256OfFile(file)} {percent}\n"));
            fields["dataset.sha256"] = Convert.ToHexStringLower(hash.GetHashAndReset());
        }
        fields["dataset.files"] = string.Join(", ", files.Select(f => Path.GetFullPath(f.File) + (f.Percent is int p ? $"%{p}" : "")));
        fields["data_path"] = args.DataPath is null ? "(each annotation file's folder)" : Path.GetFullPath(args.DataPath);
        fields["dtype"] = dtype == ScalarType.BFloat16 ? "bfloat16" : "float32";
        fields["world_size"] = worldSize.ToString(CultureInfo.InvariantCulture);
        fields["code_version"] = RunManifest.CodeVersion;
        fields["created"] = RunManifest.Timestamp;
        return new RunManifest(fields);
    }

    static string Format(object? value) => value switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    /// <summary>The differences that make two runs different trainings (all but the code version, the annotation files'
    /// paths, the video folder and the creation time).</summary>
    public static IReadOnlyList<(string Field, string Saved, string Now)> BlockingDifferences(RunManifest saved, RunManifest now) =>
        RunManifest.BlockingDifferences(saved, now, Informational);

    /// <summary>What a training run leaves in output_dir (run.json, log.csv, runs/, checkpoint-N folders, the model's or adapter's files,
    /// leftovers of an interrupted save), by name; the lock, earlier backups and anything else are not the run's.</summary>
    public static IReadOnlyList<string> EarlierRunEntries(string outputDir)
    {
        if (!Directory.Exists(outputDir)) return [];
        return [.. Directory.EnumerateFileSystemEntries(outputDir).Where(path =>
        {
            string name = Path.GetFileName(path);
            return name is FileName or SftTrainer.LogFile or "runs" || name.StartsWith("checkpoint-", StringComparison.Ordinal)
                || CheckpointWriter.IsModelFile(name) || LoraModel.IsAdapterFile(name) || name == SftTrainer.MergedFolder
                || name.EndsWith(".partial", StringComparison.Ordinal) && !name.StartsWith('.');
        }).Order(StringComparer.Ordinal)];
    }

    /// <summary>Moves an earlier run's entries into <c>earlier-run.bak-TIME</c> inside output_dir (nothing is deleted);
    /// returns that folder, or null when there was nothing to move.</summary>
    public static string? MoveAside(string outputDir)
    {
        var entries = EarlierRunEntries(outputDir);
        if (entries.Count == 0) return null;
        string name = BackupPrefix + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture), backup = Path.Combine(outputDir, name);
        for (int n = 2; Directory.Exists(backup); n++) backup = Path.Combine(outputDir, $"{name}-{n}");
        Directory.CreateDirectory(backup);
        foreach (string entry in entries)
        {
            string target = Path.Combine(backup, Path.GetFileName(entry));
            if (Directory.Exists(entry)) Directory.Move(entry, target);
            else File.Move(entry, target);
        }
        return backup;
    }
}
