using System.Reflection;
using System.Text;
using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models;

/// <summary>
/// The embedded default: a small Spatial-MLLM in the released layout (the fixture's sizes), with a byte-level
/// tokenizer whose 256 byte tokens and 8 special tokens fit its 1000-entry vocabulary. Random weights, fixed seed:
/// answers are noise, the pipeline is real.
/// </summary>
internal static class TinyCheckpoint
{
    /// <summary>Special tokens at the ids the tiny config names (bos 990, eos 991, vision 993–997).</summary>
    static readonly (string Token, int Id)[] SpecialTokens =
    [
        ("<|endoftext|>", 990), ("<|im_end|>", 991), ("<|im_start|>", 992), ("<|vision_pad|>", 993),
        ("<|vision_end|>", 994), ("<|vision_start|>", 995), ("<|image_pad|>", 996), ("<|video_pad|>", 997),
    ];

    /// <summary>Writes the whole checkpoint (files and random weights drawn with <paramref name="seed"/>) into
    /// <paramref name="folder"/>; without the spatial encoder it is a plain Qwen2.5-VL (the paper's baseline layout).</summary>
    /// <param name="merges">The tokenizer's BPE merges (<see cref="Text.BytePairMerges.Learn"/>); null: a few English ones.</param>
    /// <param name="configure">Changes to config.json before the weights are drawn (other sizes of the same architecture).</param>
    internal static void Create(string folder, long seed = 1234, bool withSpatialEncoder = true, IReadOnlyList<(string Left, string Right)>? merges = null,
        Action<System.Text.Json.Nodes.JsonObject>? configure = null)
    {
        WriteConfigAndTokenizer(folder, withSpatialEncoder, merges);
        if (configure != null)
        {
            string path = Path.Combine(folder, "config.json");
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            configure(json);
            File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        var config = ConfigFile.Load(Path.Combine(folder, "config.json"));
        using var model = SpatialMllmModel.Create(config, torch.CPU, ScalarType.Float32);
        var tensors = model.Components()
            .SelectMany(c => c.Module.StateDictWithoutTiedCopies().Select(kv => new KeyValuePair<string, Tensor>(c.Prefix + kv.Key, kv.Value)))
            .OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .ToList();
        // transformers' _init_weights from a private generator (the global one is shared with whatever else runs):
        // matrices ~ N(0, 0.02), biases 0; constant tensors (norm weights, LayerScale) keep their init.
        using var generator = new torch.Generator((ulong)seed);
        using (torch.no_grad())
        {
            foreach (var (_, t) in tensors)
            {
                if (t.NumberOfElements > 1 && (t.max() - t.min()).item<float>() == 0) continue;
                if (t.dim() >= 2) t.copy_(torch.randn(t.shape, generator: generator) * 0.02f);
                else t.zero_();
            }
        }
        string weights = Path.Combine(folder, "model.safetensors");
        SafetensorsWriter.Write(weights + ".partial", tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.Move(weights + ".partial", weights, overwrite: true);
    }

    internal static string ReadResource(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("SpatialMllm.Research.Resources." + name)
            ?? throw new InvalidOperationException($"embedded resource {name} is missing from the library build.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Writes config.json, generation_config.json, the processor and tokenizer files (everything but weights).</summary>
    internal static void WriteConfigAndTokenizer(string folder, bool withSpatialEncoder = true, IReadOnlyList<(string Left, string Right)>? merges = null)
    {
        merges ??= CommonMerges;
        Directory.CreateDirectory(folder);
        var config = System.Text.Json.Nodes.JsonNode.Parse(ReadResource("tiny-config.json"))!.AsObject();
        if (!withSpatialEncoder)
        {
            config.Remove("spatial_config");
            config.Remove("connector_config");
            config["model_type"] = "qwen2_5_vl";
            config["architectures"] = new System.Text.Json.Nodes.JsonArray("Qwen2_5_VLForConditionalGeneration");
        }
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(folder, "chat_template.json"), ReadResource("chat_template.json"));
        File.WriteAllText(Path.Combine(folder, "preprocessor_config.json"), ReadResource("preprocessor_config.json"));
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), """
            {
              "bos_token_id": 990,
              "pad_token_id": 990,
              "do_sample": true,
              "eos_token_id": [991, 990],
              "repetition_penalty": 1.05,
              "temperature": 1e-06
            }
            """);
        var vocab = ByteLevelAlphabet().Select((symbol, id) => (symbol, id)).ToDictionary(p => p.symbol, p => p.id);
        foreach (var (left, right) in merges) vocab.TryAdd(left + right, vocab.Count);
        int firstSpecial = SpecialTokens.Min(t => t.Id);
        if (vocab.Count > firstSpecial)
            throw new ArgumentException($"{merges.Count} merges make {vocab.Count} tokens: the tiny vocabulary holds {firstSpecial} before its special tokens.", nameof(merges));
        File.WriteAllText(Path.Combine(folder, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllText(Path.Combine(folder, "merges.txt"),
            "#version: 0.2\n" + string.Join("", merges.Select(m => $"{m.Left} {m.Right}\n")));
        File.WriteAllText(Path.Combine(folder, "added_tokens.json"),
            JsonSerializer.Serialize(SpecialTokens.ToDictionary(t => t.Token, t => t.Id), new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>A few English merges (Ġ is the byte-level space), so the BPE has merges to apply.</summary>
    static readonly (string Left, string Right)[] CommonMerges =
    [
        ("Ġ", "t"), ("h", "e"), ("Ġ", "a"), ("i", "n"), ("r", "e"), ("o", "n"), ("Ġt", "he"), ("e", "r"), ("Ġ", "s"),
        ("a", "t"), ("Ġ", "w"), ("Ġ", "o"), ("e", "n"), ("Ġ", "c"), ("i", "s"), ("o", "r"), ("Ġ", "h"), ("Ġ", "m"),
    ];

    /// <summary>GPT-2's byte alphabet in its own order: printable bytes first, then the rest (256+n).</summary>
    static IEnumerable<string> ByteLevelAlphabet() =>
        Text.BytePairMerges.ByteSymbols.OrderBy(symbol => symbol[0] >= 256 ? 1 : 0).ThenBy(symbol => symbol[0]);
}
