using System.Diagnostics;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Checkpoints;

/// <summary>
/// Issue 16: a config.json with impossible sizes is refused before any module is allocated (num_hidden_layers: 1000000
/// grew to 22.5 GiB; hidden_size: 1e9 and negative sizes ended in libtorch traces; zero heads in DivideByZeroException),
/// and a tensor of the wrong kind (I32 where the module has F32) is refused instead of converted.
/// </summary>
public class ConfigValidationTests
{
    /// <summary>A tiny checkpoint whose config.json has <paramref name="edit"/> applied.</summary>
    static string TinyWith(Action<JsonObject> edit)
    {
        string folder = TestPaths.NewTempDir("config-validation");
        TinyCheckpoint.Create(folder);
        string configPath = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        edit(config);
        File.WriteAllText(configPath, config.ToJsonString());
        return folder;
    }

    static CheckpointFormatException LoadFails(string folder)
    {
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<CheckpointFormatException>(() => SpatialMllmModel.Load(folder, torch.CPU).Dispose());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}: it allocated before checking");
        Assert.Contains(Path.Combine(folder, "config.json"), e.Message);
        return e;
    }

    [Theory]
    [InlineData("num_hidden_layers", 1000000, "the checkpoint's tensors hold only")]
    [InlineData("hidden_size", 1000000000, "rope_scaling.mrope_section = [2, 3, 3] must be three positive numbers summing to half the head size (hidden_size / num_attention_heads / 2 = 125000000)")]
    [InlineData("intermediate_size", 2000000000, "the checkpoint's tensors hold only")]
    [InlineData("vocab_size", 2000000000, "the checkpoint's tensors hold only")]
    [InlineData("hidden_size", -64, "hidden_size = -64 must be positive")]
    [InlineData("num_hidden_layers", -1, "num_hidden_layers = -1 must be positive")]
    [InlineData("num_attention_heads", 0, "num_attention_heads = 0 must be positive")]
    [InlineData("num_key_value_heads", 0, "num_key_value_heads = 0 must be positive")]
    [InlineData("num_attention_heads", 3, "hidden_size = 64 is not divisible by num_attention_heads = 3")]
    [InlineData("num_key_value_heads", 3, "num_attention_heads = 4 is not divisible by num_key_value_heads = 3")]
    [InlineData("rms_norm_eps", 0, "rms_norm_eps = 0 must be positive")]
    [InlineData("video_token_id", 5000, "video_token_id = 5000 is outside the vocabulary")]
    public void Text_sizes_are_checked_before_allocation(string key, double value, string message)
    {
        var e = LoadFails(TinyWith(c => c[key] = value));
        Assert.Contains(message, e.Message);
        Assert.Contains(key, e.Message);
        if (message.StartsWith("the checkpoint", StringComparison.Ordinal)) Assert.Contains($"{key} = {value}", e.Message);
    }

    [Fact]
    public void A_non_integer_size_is_a_type_error_naming_the_key()
    {
        string folder = TinyWith(c => c["hidden_size"] = JsonNode.Parse("1e9"));
        var e = LoadFails(folder);
        Assert.Contains("'hidden_size'", e.Message);
    }

    [Theory]
    [InlineData("vision_config", "num_heads", 0, "vision_config.num_heads = 0 must be positive")]
    [InlineData("vision_config", "depth", 100000, "the checkpoint's tensors hold only")]
    [InlineData("vision_config", "hidden_size", -32, "vision_config.hidden_size = -32 must be positive")]
    [InlineData("vision_config", "window_size", 50, "vision_config.window_size = 50 is not a multiple of patch_size × spatial_merge_size = 28")]
    [InlineData("vision_config", "patch_size", 0, "vision_config.patch_size = 0 must be positive")]
    [InlineData("spatial_config", "num_heads", 0, "spatial_config.num_heads = 0 must be positive")]
    [InlineData("spatial_config", "depth", 1000000, "the checkpoint's tensors hold only")]
    [InlineData("spatial_config", "embed_dim", -1, "spatial_config.embed_dim = -1 must be positive")]
    [InlineData("spatial_config", "num_heads", 3, "spatial_config.embed_dim = 64 must divide into num_heads = 3 heads")]
    public void Vision_and_spatial_sizes_are_checked(string section, string key, int value, string message)
    {
        var e = LoadFails(TinyWith(c => c[section]![key] = value));
        Assert.Contains(message, e.Message);
        if (message.StartsWith("the checkpoint", StringComparison.Ordinal)) Assert.Contains($"{section}.{key} = {value}", e.Message);
    }

    /// <summary>Issue 23: VGGT's head sizes and its position/register tokens were not counted, so
    /// <c>dpt_head.features: 1000000</c> or <c>camera_head.trunk_depth: 1000000</c> grew the process until it was killed.</summary>
    [Theory]
    [InlineData("spatial_config.dpt_head.features", "1000000", "refusing to build it", "spatial_config.dpt_head.features = 1000000")]
    [InlineData("spatial_config.dpt_head.features", "2000", "the checkpoint's tensors hold only", "spatial_config.dpt_head.features = 2000")]
    [InlineData("spatial_config.camera_head.trunk_depth", "1000000", "the checkpoint's tensors hold only", "spatial_config.camera_head.trunk_depth = 1000000")]
    [InlineData("spatial_config.dpt_head.out_channels", "[8, 16, 1000000, 32]", "the checkpoint's tensors hold only", "dpt_head.out_channels = [8, 16, 1000000, 32]")]
    [InlineData("spatial_config.img_size", "14000000", "refusing to build it", "img_size = 14000000")]
    [InlineData("spatial_config.num_register_tokens", "100000000", "the checkpoint's tensors hold only", "num_register_tokens = 100000000")]
    [InlineData("connector_config.mlp_ratio", "1000000", "connector_config.mlp_ratio = 1000000 must be in (0, 64]", null)]
    public void Every_VGGT_and_connector_size_is_bounded_before_allocation(string path, string json, string message, string? named)
    {
        var e = LoadFails(TinyWith(c =>
        {
            string[] keys = path.Split('.');
            var section = keys[..^1].Aggregate((JsonNode)c, (node, key) => node[key]!);
            section[keys[^1]] = JsonNode.Parse(json);
        }));
        Assert.Contains(message, e.Message);
        if (named != null) Assert.Contains(named, e.Message);
    }

    [Fact]
    public void The_spatial_part_is_checked_when_VGGT_is_loaded_alone()
    {
        string folder = TinyWith(c => c["spatial_config"]!["depth"] = 1000000);
        var e = Assert.Throws<CheckpointFormatException>(() => VggtLoader.Load(folder, torch.CPU).Dispose());
        Assert.Contains("the checkpoint's tensors hold only", e.Message);
        Assert.Contains("spatial_config.depth = 1000000", e.Message);
    }

    [Fact]
    public void Inspect_of_a_bad_config_names_it_too()
    {
        string folder = TinyWith(c => c["num_attention_heads"] = 0);
        var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(folder).Dispose());
        Assert.Contains("num_attention_heads = 0", e.Message);
    }

    [Fact]
    public void A_valid_config_loads()
    {
        using var model = SpatialMllmModel.Load(TinyWith(_ => { }), torch.CPU);
        Assert.NotNull(model.LoadReport);
        Assert.True(model.LoadReport.IsComplete);
    }

    [Fact]
    public void An_integer_tensor_where_the_module_has_floats_is_refused_naming_the_key()
    {
        string folder = TinyWith(_ => { });
        string weights = Path.Combine(folder, "model.safetensors");
        var tensors = new Dictionary<string, Tensor>();
        using (var file = SafetensorsFile.Open(weights))
            foreach (string key in file.Entries.Keys) tensors[key] = file.Read(key);
        const string Key = "model.norm.weight";
        var asInt = tensors[Key].to(ScalarType.Int32);
        tensors[Key].Dispose();
        tensors[Key] = asInt;
        SafetensorsWriter.Write(weights, tensors);
        foreach (var t in tensors.Values) t.Dispose();

        var e = Assert.Throws<CheckpointFormatException>(() => SpatialMllmModel.Load(folder, torch.CPU).Dispose());
        Assert.Contains($"'{Key}' is stored as I32 (integer) but the module expects Float32 (floating point)", e.Message);
        Assert.Contains(weights, e.Message);
    }
}
