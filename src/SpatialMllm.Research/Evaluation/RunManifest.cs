using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace SpatialMllm.Research.Evaluation;

/// <summary>Saved answers that another model or other settings produced; the message lists what differs.</summary>
public sealed class RunManifestMismatchException(string message) : InvalidOperationException(message);

/// <summary>
/// What produced a results file: the model (folder and a content fingerprint of its config and weights), the frames,
/// sampler and decoding settings, the dataset's hash and the code version. Kept in a sidecar <c>{results}.run.json</c>,
/// so results files stay plain JSON lines that <c>merge</c>, <c>score</c> and older tools read unchanged. A resumed run
/// must match it field for field (the code version only warns: fixes between runs are normal); <c>--force-new</c> moves
/// the old files aside and starts over.
/// </summary>
internal sealed record RunManifest(IReadOnlyDictionary<string, string> Fields)
{
    /// <summary>Fields that are reported when they differ but do not stop a resume.</summary>
    static readonly string[] Informational = ["code_version", "dataset.file", "created"];

    public static string PathFor(string resultsPath) => Path.ChangeExtension(resultsPath, null) + ".run.json";

    /// <summary>The manifest of a run about to start.</summary>
    /// <param name="modelDir">Null for a dry run (placeholder answers, no model).</param>
    public static RunManifest Describe(string benchmark, string? modelDir, AnswererOptions options, string dtype,
        bool stripAnswers, string datasetPath)
    {
        // Settings that cannot change an answer stay out, so that a run resumes with any of them: prefix sharing, the batch
        // size (greedy decoding of a batch gives each question's own answer) and how far videos are decoded ahead.
        var fields = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["benchmark"] = benchmark,
            ["answerer"] = modelDir == null ? "dry-run" : "model",
            ["frames"] = options.Frames.ToString(CultureInfo.InvariantCulture),
            ["sampler"] = options.Sampler == SamplerKind.SpaceAware ? "space-aware" : "uniform",
            ["max_new_tokens"] = options.MaxNewTokens.ToString(CultureInfo.InvariantCulture),
            ["resized_size"] = options.ResizedSize is { } s ? $"{s.Height}x{s.Width}" : "pixel budget",
            ["decoding"] = "greedy",
            ["dtype"] = modelDir == null ? "-" : dtype,
            ["strip_answers"] = stripAnswers ? "yes" : "no",
            ["dataset.file"] = Path.GetFullPath(datasetPath),
            ["dataset.sha256"] = Sha256OfFile(datasetPath),
            ["code_version"] = CodeVersion,
            ["created"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture),
        };
        if (modelDir != null)
        {
            var (config, weights) = ModelFingerprint(modelDir);
            fields["model.folder"] = Path.GetFullPath(modelDir);
            fields["model.config_sha256"] = config;
            fields["model.weights_sha256"] = weights;
        }
        return new RunManifest(fields);
    }

    /// <summary>The library's informational version: the package version and the git commit it was built from.</summary>
    public static string CodeVersion =>
        typeof(RunManifest).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>
    /// Makes <paramref name="resultsPath"/> ready for this run: with <paramref name="forceNew"/>, earlier files are moved
    /// aside (never deleted); otherwise answers already there must come from a run with the same manifest. Then the
    /// manifest is written. Throws <see cref="RunManifestMismatchException"/> naming every differing field.
    /// </summary>
    /// <param name="alsoMoveAside">Other files of the earlier run to keep with the backup (worker shards).</param>
    public void Adopt(string resultsPath, bool forceNew, TextWriter log, IEnumerable<string>? alsoMoveAside = null)
    {
        string manifestPath = PathFor(resultsPath);
        bool hasAnswers = File.Exists(resultsPath) && new FileInfo(resultsPath).Length > 0;
        if (forceNew)
        {
            string suffix = ".bak-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
            var moved = new List<string>();
            foreach (string file in new[] { resultsPath, manifestPath, SkippedQuestions.PathFor(resultsPath) }.Concat(alsoMoveAside ?? []))
                if (File.Exists(file)) { File.Move(file, file + suffix); moved.Add(file + suffix); }
            if (moved.Count > 0) log.WriteLine($"--force-new: starting over; the earlier files are kept as {string.Join(", ", moved)}");
        }
        else if (hasAnswers)
        {
            if (!File.Exists(manifestPath))
                throw new RunManifestMismatchException(
                    $"{resultsPath} already holds answers but has no run manifest ({manifestPath}): it was written by an older " +
                    "version or another tool, so which model and settings produced it cannot be checked. Pass --force-new to " +
                    "start a new results file (the old one is kept as a backup), or --out another file.");
            var saved = Read(manifestPath);
            var differences = Differences(saved, this);
            var blocking = BlockingDifferences(saved, this);
            if (blocking.Count > 0)
                throw new RunManifestMismatchException(
                    $"{resultsPath} holds answers from a different run, so resuming would mix them with this one's:" + Environment.NewLine +
                    string.Join(Environment.NewLine, blocking.Select(d => $"  {d.Field}: saved {d.Saved}, now {d.Now}")) + Environment.NewLine +
                    "Pass the saved settings to resume it, --force-new to start over (the old file is kept as a backup), or --out another file.");
            foreach (var d in differences.Where(d => d.Field == "code_version"))
                log.WriteLine($"note: {resultsPath} was started by code version {d.Saved}; resuming with {d.Now}.");
            // Keep what the saved run recorded (its creation time, its code version): the file describes the first run.
            return;
        }
        Write(manifestPath);
    }

    public static RunManifest Read(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            return new RunManifest(doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.ToString()));
        }
        catch (JsonException e) { throw new DataFileException($"{path}: not a valid run manifest ({e.Message})."); }
    }

    public void Write(string path)
    {
        string temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(Fields, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.Move(temp, path, overwrite: true);
    }

    public static IReadOnlyList<(string Field, string Saved, string Now)> Differences(RunManifest saved, RunManifest now) =>
        [.. saved.Fields.Keys.Union(now.Fields.Keys).Order(StringComparer.Ordinal)
            .Select(k => (k, saved.Fields.GetValueOrDefault(k, "(none)"), now.Fields.GetValueOrDefault(k, "(none)")))
            .Where(d => d.Item2 != d.Item3)];

    /// <summary>The differences that make two runs' answers incomparable (all but the code version, the dataset's path
    /// and the creation time).</summary>
    public static IReadOnlyList<(string Field, string Saved, string Now)> BlockingDifferences(RunManifest saved, RunManifest now) =>
        [.. Differences(saved, now).Where(d => !Informational.Contains(d.Field))];

    /// <summary>SHA-256 of config.json, and a fingerprint of the weights: the index (if sharded), and per safetensors file
    /// its name, size, header (every key, dtype, shape and offset) and the first and last MiB of its data, which tells
    /// apart two trainings or random initialisations of one architecture without reading gigabytes.</summary>
    public static (string Config, string Weights) ModelFingerprint(string modelDir)
    {
        string configPath = Path.Combine(modelDir, "config.json");
        string config = File.Exists(configPath) ? Sha256OfFile(configPath) : "(no config.json)";
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        string index = Path.Combine(modelDir, "model.safetensors.index.json");
        if (File.Exists(index)) hash.AppendData(File.ReadAllBytes(index));
        if (!Directory.Exists(modelDir)) return (config, "(no folder)");
        foreach (string file in WeightFiles(modelDir, index).Where(File.Exists))
        {
            using var stream = File.OpenRead(file);
            hash.AppendData(Encoding.UTF8.GetBytes($"{Path.GetFileName(file)}\n{stream.Length}\n"));
            const int Sample = 1 << 20;
            var head = new byte[(int)Math.Min(stream.Length, Sample)];
            stream.ReadExactly(head);
            hash.AppendData(head);
            if (stream.Length > 2L * Sample)
            {
                stream.Seek(-Sample, SeekOrigin.End);
                var tail = new byte[Sample];
                stream.ReadExactly(tail);
                hash.AppendData(tail);
            }
            // The header can be longer than the first MiB: hash it whole.
            stream.Seek(0, SeekOrigin.Begin);
            var lengthBytes = new byte[8];
            if (stream.Length >= 8 && stream.Read(lengthBytes) == 8 && BitConverter.ToInt64(lengthBytes) is long n && n > Sample && n < stream.Length)
            {
                var header = new byte[n];
                stream.ReadExactly(header);
                hash.AppendData(header);
            }
        }
        return (config, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>The shards the index names, else model.safetensors (other .safetensors beside them, e.g. a fixture's io
    /// file, are not weights).</summary>
    static IEnumerable<string> WeightFiles(string modelDir, string indexPath)
    {
        if (!File.Exists(indexPath)) return [Path.Combine(modelDir, "model.safetensors")];
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            return doc.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString() ?? "").Distinct()
                .Order(StringComparer.Ordinal).Select(name => Path.Combine(modelDir, name)).ToList();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { return []; }
    }

    static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
