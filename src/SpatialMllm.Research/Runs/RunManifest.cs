using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace SpatialMllm.Research.Runs;

/// <summary>Saved work that another model, other data or other settings produced; the message lists what differs.</summary>
public sealed class RunManifestMismatchException(string message) : InvalidOperationException(message);

/// <summary>
/// What produced a run's output, as named fields (the model's folder and content fingerprint, the data's hash, the
/// settings that change results, the code version), kept in a JSON sidecar. A resumed run compares its own manifest with
/// the saved one field by field: evaluation results (<c>Evaluation.ResultsManifest</c>) and training folders
/// (<c>Training.TrainingRunManifest</c>) decide which fields only inform and which stop a resume.
/// </summary>
internal sealed record RunManifest(IReadOnlyDictionary<string, string> Fields)
{
    /// <summary>The library's informational version: the package version and the git commit it was built from.</summary>
    public static string CodeVersion =>
        typeof(RunManifest).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>Now, as the <c>created</c> field records it.</summary>
    public static string Timestamp => DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture);

    public static RunManifest Read(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: not a valid run manifest (expected a JSON object).");
            return new RunManifest(doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.ToString()));
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a valid run manifest ({e.Message})."); }
    }

    public void Write(string path) =>
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(Fields, new JsonSerializerOptions { WriteIndented = true }) + "\n");

    public static IReadOnlyList<(string Field, string Saved, string Now)> Differences(RunManifest saved, RunManifest now) =>
        [.. saved.Fields.Keys.Union(now.Fields.Keys).Order(StringComparer.Ordinal)
            .Select(k => (k, saved.Fields.GetValueOrDefault(k, "(none)"), now.Fields.GetValueOrDefault(k, "(none)")))
            .Where(d => d.Item2 != d.Item3)];

    /// <summary>The differences outside <paramref name="informational"/>: those that make two runs' outputs incomparable.</summary>
    public static IReadOnlyList<(string Field, string Saved, string Now)> BlockingDifferences(RunManifest saved, RunManifest now,
        IReadOnlyCollection<string> informational) =>
        [.. Differences(saved, now).Where(d => !informational.Contains(d.Field))];

    /// <summary>One line per difference, indented, for a message.</summary>
    public static string List(IEnumerable<(string Field, string Saved, string Now)> differences) =>
        string.Join(Environment.NewLine, differences.Select(d => $"  {d.Field}: saved {d.Saved}, now {d.Now}"));

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

    public static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
