using System.Text.Json;
using SpatialMllm.Research.Configs;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Checkpoints;

/// <summary>
/// A Hugging Face model folder: <c>config.json</c> plus either <c>model.safetensors</c> or
/// <c>model.safetensors.index.json</c> and its shards. Tensors are read lazily, one at a time.
/// </summary>
internal sealed class Checkpoint : IDisposable
{
    readonly Dictionary<string, SafetensorsFile> _fileByKey;
    readonly List<SafetensorsFile> _files;

    public string Folder { get; }
    public SpatialMllmConfig Config { get; }
    public IReadOnlyCollection<string> Keys => _fileByKey.Keys;

    Checkpoint(string folder, SpatialMllmConfig config, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> fileByKey)
    {
        Folder = folder; Config = config; _files = files; _fileByKey = fileByKey;
    }

    public static Checkpoint Open(string folder)
    {
        if (!Directory.Exists(folder)) throw new CheckpointFormatException($"{folder}: checkpoint folder not found.");
        string configPath = System.IO.Path.Combine(folder, "config.json");
        var checkpoint = OpenWith(folder, ConfigFile.Load(configPath));
        try { ConfigValidation.Validate(checkpoint.Config, configPath, checkpoint.StoredElementCount); }
        catch { checkpoint.Dispose(); throw; }
        return checkpoint;
    }

    /// <summary>Elements in all tensors of the checkpoint (what a config's sizes are checked against).</summary>
    public long StoredElementCount => _fileByKey.Sum(kv => kv.Value.Entry(kv.Key).ElementCount);

    /// <summary>A folder whose config.json is not a Spatial-MLLM/Qwen2.5-VL one (e.g. facebook/VGGT-1B), with the
    /// config the caller derived from it.</summary>
    internal static Checkpoint OpenWith(string folder, SpatialMllmConfig config)
    {
        if (!Directory.Exists(folder)) throw new CheckpointFormatException($"{folder}: checkpoint folder not found.");
        string single = System.IO.Path.Combine(folder, "model.safetensors");
        string index = System.IO.Path.Combine(folder, "model.safetensors.index.json");
        var files = new List<SafetensorsFile>();
        var fileByKey = new Dictionary<string, SafetensorsFile>();
        try
        {
            if (File.Exists(index))
            {
                foreach (var (shardName, keys) in ReadIndex(index))
                {
                    string shardPath = System.IO.Path.Combine(folder, shardName);
                    if (!File.Exists(shardPath))
                        throw new CheckpointFormatException($"{index}: shard '{shardName}' ({keys.Count} tensors, e.g. '{keys[0]}') is missing from {folder}.");
                    var shard = SafetensorsFile.Open(shardPath);
                    files.Add(shard);
                    foreach (string key in keys)
                    {
                        if (!shard.Contains(key))
                            throw new CheckpointFormatException($"{index}: maps '{key}' to {shardName}, which has no such tensor.");
                        fileByKey[key] = shard;
                    }
                }
            }
            else if (File.Exists(single))
            {
                var file = SafetensorsFile.Open(single);
                files.Add(file);
                foreach (string key in file.Entries.Keys) fileByKey[key] = file;
            }
            else throw new CheckpointFormatException($"{folder}: neither model.safetensors nor model.safetensors.index.json is there.");
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
        return new Checkpoint(folder, config, files, fileByKey);
    }

    static List<(string Shard, List<string> Keys)> ReadIndex(string indexPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            return doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .GroupBy(p => p.Value.GetString() ?? throw new FormatException($"'{p.Name}' maps to null"))
                .Select(g => (g.Key, g.Select(p => p.Name).ToList()))
                .ToList();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new CheckpointFormatException($"{indexPath}: not a valid safetensors index ({e.Message}).", e);
        }
    }

    public bool Contains(string key) => _fileByKey.ContainsKey(key);

    public SafetensorsEntry Entry(string key) => FileOf(key).Entry(key);

    public Tensor Read(string key, ScalarType? dtype = null, Device? device = null) => FileOf(key).Read(key, dtype, device);

    public void CopyInto(string key, Tensor destination) => FileOf(key).CopyInto(key, destination);

    SafetensorsFile FileOf(string key) =>
        _fileByKey.TryGetValue(key, out var f) ? f : throw new CheckpointFormatException($"{Folder}: the checkpoint has no tensor '{key}'.");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
