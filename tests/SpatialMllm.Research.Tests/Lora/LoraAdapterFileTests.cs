using System.Text.Json.Nodes;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.TestSupport;
using TorchSharp;
using static SpatialMllm.Research.TestSupport.WeightEdits;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Lora;

/// <summary>
/// An adapter on disk as PEFT writes it and reads it back. The expected names are PEFT's, from its code (huggingface/peft):
/// <c>utils/constants.py</c> (CONFIG_NAME "adapter_config.json", SAFETENSORS_WEIGHTS_NAME "adapter_model.safetensors"),
/// <c>peft_model.py</c> <c>save_pretrained</c> (<c>safe_save_file(…, metadata={"format": "pt"})</c>, <c>inference_mode</c>
/// set true in the saved config, <c>json.dumps(…, indent=2, sort_keys=True)</c> in <c>config.py</c>),
/// <c>utils/save_and_load.py</c> <c>get_peft_model_state_dict</c> (the state dict of the PeftModel — module paths under
/// <c>base_model.model.</c> — with the adapter name removed: <c>….q_proj.lora_A.default.weight</c> → <c>….q_proj.lora_A.weight</c>),
/// <c>tuners/lora/layer.py</c> <c>update_layer</c> (<c>lora_A = nn.Linear(in_features, r, bias=False)</c>,
/// <c>lora_B = nn.Linear(r, out_features, bias=False)</c>: weights [r, in] and [out, r]).
/// </summary>
public sealed class LoraAdapterFileTests : IDisposable
{
    readonly string _folder = TestPaths.NewTempDir("lora-files");
    readonly List<IDisposable> _owned = [];

    public LoraAdapterFileTests() => TinyCheckpoint.Create(_folder);

    public void Dispose()
    {
        foreach (var d in Enumerable.Reverse(_owned)) d.Dispose();
    }

    SpatialMllmModel Load()
    {
        var model = SpatialMllmModel.Load(_folder, torch.CPU);
        _owned.Add(model);
        return model;
    }

    static readonly LoraConfig Config = new() { R = 4, LoraAlpha = 16, LoraDropout = 0.05, TargetModules = ["q_proj", "v_proj"] };

    /// <summary>An adapter with lora_B moved off zero (as training would), saved.</summary>
    (LoraModel Lora, string Folder) Saved(SpatialMllmModel model, LoraConfig? config = null)
    {
        var lora = LoraModel.Apply(model, config ?? Config);
        using (torch.no_grad())
        using (var generator = new Generator(11))
            foreach (var layer in lora.Layers)
            {
                using var noise = torch.randn(layer.lora_B.weight!.shape, generator: generator);
                layer.lora_B.weight!.copy_(noise);
            }
        string folder = TestPaths.NewTempDir("lora-adapter");
        lora.save_pretrained(folder);
        return (lora, folder);
    }

    [Fact]
    public void Save_pretrained_writes_PEFTs_files_keys_shapes_and_config()
    {
        var model = Load();
        var (_, folder) = Saved(model);
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors"], Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        var text = File.ReadAllText(Path.Combine(folder, "adapter_config.json"));
        var config = JsonNode.Parse(text)!.AsObject();
        Assert.Equal("LORA", (string?)config["peft_type"]);
        Assert.Equal(4, (int)config["r"]!);
        Assert.Equal("16", config["lora_alpha"]!.ToJsonString()); // an int, as PEFT writes lora_alpha
        Assert.Equal(0.05, (double)config["lora_dropout"]!);
        Assert.Equal(["q_proj", "v_proj"], config["target_modules"]!.AsArray().Select(t => (string)t!));
        Assert.Equal("none", (string?)config["bias"]);
        Assert.Equal("CAUSAL_LM", (string?)config["task_type"]);
        Assert.Equal(_folder, (string?)config["base_model_name_or_path"]);
        Assert.False((bool)config["fan_in_fan_out"]!);
        Assert.True((bool)config["inference_mode"]!);
        Assert.True((bool)config["init_lora_weights"]!);
        Assert.False((bool)config["use_rslora"]!);
        Assert.False((bool)config["use_dora"]!);
        Assert.Equal(config.Select(kv => kv.Key).Order(StringComparer.Ordinal), config.Select(kv => kv.Key)); // sort_keys=True
        Assert.StartsWith("{\n  \"alpha_pattern\": {}", text.ReplaceLineEndings("\n"));                    // indent=2

        using var file = SafetensorsFile.Open(Path.Combine(folder, "adapter_model.safetensors"));
        Assert.Equal("pt", file.Metadata["format"]);
        var text_ = model.Config.Text;
        var expected = new Dictionary<string, long[]>();
        for (int i = 0; i < text_.NumHiddenLayers; i++)
        {
            long q = (long)text_.NumAttentionHeads * text_.HeadDim, kv = (long)text_.NumKeyValueHeads * text_.HeadDim;
            expected[$"base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight"] = [4, text_.HiddenSize];
            expected[$"base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight"] = [q, 4];
            expected[$"base_model.model.model.layers.{i}.self_attn.v_proj.lora_A.weight"] = [4, text_.HiddenSize];
            expected[$"base_model.model.model.layers.{i}.self_attn.v_proj.lora_B.weight"] = [kv, 4];
        }
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), file.Entries.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, shape) in expected) Assert.Equal(shape, file.Entries[key].Shape);
        Assert.All(file.Entries.Values, e => Assert.Equal(ScalarType.Float32, e.DType));
    }

    [Fact]
    public void A_loaded_adapter_computes_what_the_saved_one_did()
    {
        var model = Load();
        var (_, folder) = Saved(model);
        using var frames = TinyFixture.Read("frames_uint8_tchw");
        using var features = model.EncodeFrames(frames);
        var expected = Logits(model, features, DecoderPath.SharedPrefix);

        var other = Load();
        var loaded = LoraModel.Load(other, folder);
        Assert.Equal(Config with { BaseModelNameOrPath = _folder }, loaded.peft_config with { TargetModules = Config.TargetModules });
        Assert.Equal(["q_proj", "v_proj"], loaded.peft_config.TargetModules!);
        Assert.All(loaded.named_parameters(), p => Assert.False(p.Parameter.requires_grad)); // PEFT's inference mode
        using var otherFeatures = other.EncodeFrames(frames);
        double difference = MaxDifference(expected, Logits(other, otherFeatures, DecoderPath.SharedPrefix));
        Assert.True(difference <= 1e-6, $"the loaded adapter's logits differ by {difference:E2}");
        var plain = Load();
        using var plainFeatures = plain.EncodeFrames(frames);
        Assert.True(MaxDifference(expected, Logits(plain, plainFeatures, DecoderPath.SharedPrefix)) > 1e-3, "the adapter did not change the logits");
    }

    [Fact]
    public void A_mismatched_adapter_is_an_error_naming_the_key_and_leaves_the_model_without_adapters()
    {
        var (lora, folder) = Saved(Load());
        string weights = Path.Combine(folder, "adapter_model.safetensors");
        var tensors = lora.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        const string dropped = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";

        string Rewrite(Func<Dictionary<string, Tensor>, IEnumerable<KeyValuePair<string, Tensor>>> edit, string? config = null)
        {
            string copy = TestPaths.NewTempDir("lora-bad");
            SafetensorsWriter.Write(Path.Combine(copy, "adapter_model.safetensors"), edit(tensors));
            File.WriteAllText(Path.Combine(copy, "adapter_config.json"), config ?? File.ReadAllText(Path.Combine(folder, "adapter_config.json")));
            return copy;
        }

        var target = Load();
        var missing = Assert.Throws<CheckpointFormatException>(() => LoraModel.Load(target, Rewrite(t => t.Where(kv => kv.Key != dropped))));
        Assert.Contains($"has no '{dropped}'", missing.Message);
        Assert.Null(LoraModel.Of(target));
        Assert.DoesNotContain(target.Language.named_parameters(), p => p.name.Contains("lora_", StringComparison.Ordinal));

        using var wide = torch.zeros(8, target.Config.Text.HiddenSize);
        var shape = Assert.Throws<CheckpointFormatException>(() => LoraModel.Load(target,
            Rewrite(t => t.Select(kv => kv.Key == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" ? KeyValuePair.Create(kv.Key, wide) : kv))));
        Assert.Contains("'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has shape [8, ", shape.Message);

        var named = Assert.Throws<CheckpointFormatException>(() => LoraModel.Load(target,
            Rewrite(t => t.Select(kv => KeyValuePair.Create(kv.Key.Replace(".lora_A.weight", ".lora_A.default.weight"), kv.Value)))));
        Assert.Contains("lora_A.default.weight", named.Message);
        Assert.Contains("adapter name", named.Message);

        string config = File.ReadAllText(Path.Combine(folder, "adapter_config.json"));
        var elsewhere = Assert.Throws<CheckpointFormatException>(() => LoraModel.Load(target,
            Rewrite(t => t, config.Replace("\"v_proj\"", "\"w_proj\""))));
        Assert.Contains("layers.0.self_attn.v_proj.lora_A.weight", elsewhere.Message); // the file's keys name a module the config no longer targets

        var foreign = Assert.Throws<CheckpointFormatException>(() => LoraModel.Load(target,
            Rewrite(t => t, config.Replace("\"q_proj\",", "").Replace("\"v_proj\"", "\"wq\""))));
        Assert.Contains("not found in the base model", foreign.Message);

        var dora = Assert.Throws<CheckpointFormatException>(() => LoraModel.Load(target, Rewrite(t => t, config.Replace("\"use_dora\": false", "\"use_dora\": true"))));
        Assert.Contains("use_dora", dora.Message);
        var notLora = Assert.Throws<CheckpointFormatException>(() => LoraModel.Load(target, Rewrite(t => t, config.Replace("\"LORA\"", "\"IA3\""))));
        Assert.Contains("peft_type is \"IA3\"", notLora.Message);
        Assert.Null(LoraModel.Of(target));
        foreach (var t in tensors.Values) t.Dispose();
    }
}
