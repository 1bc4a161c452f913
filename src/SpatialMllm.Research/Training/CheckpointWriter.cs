using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runs;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// Writes a model in the released layout: <c>model-0000i-of-0000n.safetensors</c> shards with
/// <c>model.safetensors.index.json</c> (transformers' <c>save_pretrained</c>), <c>config.json</c> and the tokenizer,
/// processor and generation files of the folder it was loaded from — so <see cref="SpatialMllmModel.Load"/> (or
/// transformers) loads it back. Every file is written under a temporary name and renamed, so a kill mid-save leaves
/// whole files (the previous save's or this one's), never a truncated one under its final name.
/// </summary>
public static class CheckpointWriter
{
    /// <summary>transformers' default max_shard_size ("5GB").</summary>
    public const long DefaultShardBytes = 5_000_000_000;

    /// <summary>Every file of a checkpoint folder besides the weights that a trained copy keeps.</summary>
    static readonly string[] CompanionFiles =
    [
        "config.json", "generation_config.json", "preprocessor_config.json", "chat_template.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json",
    ];

    /// <summary>Whether a file name is one that <see cref="Save"/> writes (weights, index, config, tokenizer files).</summary>
    public static bool IsModelFile(string name) =>
        CompanionFiles.Contains(name) || name is "model.safetensors" or "model.safetensors.index.json"
        || name.StartsWith("model-", StringComparison.Ordinal) && name.EndsWith(".safetensors", StringComparison.Ordinal);

    public static void Save(SpatialMllmModel model, string folder, long maxShardBytes = DefaultShardBytes)
    {
        string source = model.Folder ?? throw new InvalidOperationException("The model was not loaded from a folder: there is no config or tokenizer to save with it.");
        if (LoraModel.Of(model) is { } lora)
            throw new InvalidOperationException(
                $"The model carries LoRA adapters ({lora.Layers.Count} layers): save them with save_pretrained (PEFT's layout), or " +
                "merge_and_unload() first to save the model with the adapters merged in.");
        Directory.CreateDirectory(folder);
        foreach (string name in CompanionFiles)
            if (File.Exists(Path.Combine(source, name)) && Path.GetFullPath(source) != Path.GetFullPath(folder))
                AtomicFile.Copy(Path.Combine(source, name), Path.Combine(folder, name));

        var tensors = model.Components()
            .SelectMany(c => c.Module.StateDictWithoutTiedCopies().Select(kv => (Key: c.Prefix + kv.Key, Tensor: kv.Value)))
            .OrderBy(t => t.Key, StringComparer.Ordinal).ToList();
        var shards = new List<List<(string Key, Tensor Tensor)>> { new() };
        long shardBytes = 0, total = 0;
        foreach (var t in tensors)
        {
            long bytes = t.Tensor.NumberOfElements * SafetensorsFile.ElementSize(t.Tensor.dtype);
            if (shardBytes > 0 && shardBytes + bytes > maxShardBytes) { shards.Add([]); shardBytes = 0; }
            shards[^1].Add(t);
            shardBytes += bytes;
            total += bytes;
        }
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        for (int i = 0; i < shards.Count; i++)
        {
            string name = shards.Count == 1 ? "model.safetensors" : $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            var shard = shards[i];
            AtomicFile.Write(Path.Combine(folder, name), path => SafetensorsWriter.Write(path, shard.Select(t => KeyValuePair.Create(t.Key, t.Tensor)), metadata));
            foreach (var (key, _) in shards[i]) weightMap[key] = name;
        }
        if (shards.Count > 1)
        {
            var index = new { metadata = new { total_size = total }, weight_map = weightMap };
            AtomicFile.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
        }
    }
}
