using System.Text;
using SpatialMllm.Research.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Checkpoints;

/// <summary>Every malformed checkpoint gives a CheckpointFormatException that names the file (and the key).</summary>
public class CheckpointBadInputTests
{
    readonly string _dir = TestPaths.NewTempDir("bad-ckpt");

    string WriteValid(string name = "model.safetensors")
    {
        string path = Path.Combine(_dir, name);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["a.weight"] = torch.arange(12, dtype: ScalarType.Float32).reshape(3, 4),
            ["b.bias"] = torch.ones(5, dtype: ScalarType.BFloat16),
        });
        return path;
    }

    static string WriteRaw(string path, string headerJson, int dataBytes, long? declaredLength = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(headerJson);
        using var s = File.Create(path);
        s.Write(BitConverter.GetBytes(declaredLength ?? json.Length));
        s.Write(json);
        s.Write(new byte[dataBytes]);
        return path;
    }

    CheckpointFormatException Fails(string path)
    {
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        return e;
    }

    [Fact]
    public void Round_trips_what_the_writer_wrote()
    {
        using var f = SafetensorsFile.Open(WriteValid());
        using var a = f.Read("a.weight");
        Assert.Equal(66.0, a.sum().item<float>());
        Assert.Equal(ScalarType.BFloat16, f.Entry("b.bias").DType);
    }

    [Fact]
    public void Missing_file() => Assert.Contains("not found", Fails(Path.Combine(_dir, "nope.safetensors")).Message);

    [Fact]
    public void Shorter_than_the_header_length()
    {
        string path = Path.Combine(_dir, "tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("truncated", Fails(path).Message);
    }

    [Fact]
    public void Truncated_data_section_names_the_tensor()
    {
        string path = WriteValid();
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        var e = Fails(path);
        Assert.Contains("'b.bias'", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Header_length_past_the_end() =>
        Assert.Contains("past the end", Fails(WriteRaw(Path.Combine(_dir, "h.safetensors"), "{}", 0, declaredLength: 1000)).Message);

    [Fact]
    public void Header_over_100_MB() =>
        Assert.Contains("100 MB", Fails(WriteRaw(Path.Combine(_dir, "h.safetensors"), "{}", 0, declaredLength: 200_000_000)).Message);

    [Fact]
    public void Malformed_header_json() =>
        Assert.Contains("not valid JSON", Fails(WriteRaw(Path.Combine(_dir, "j.safetensors"), "{\"a\": [", 0)).Message);

    [Fact]
    public void Unknown_dtype_names_key_and_dtype()
    {
        var e = Fails(WriteRaw(Path.Combine(_dir, "d.safetensors"), """{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}""", 2));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("F8_E4M3", e.Message);
    }

    [Fact]
    public void Byte_range_that_does_not_match_the_shape()
    {
        var e = Fails(WriteRaw(Path.Combine(_dir, "s.safetensors"), """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}""", 8));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("needs 16 bytes", e.Message);
    }

    [Fact]
    public void Byte_range_that_overruns_the_file()
    {
        var e = Fails(WriteRaw(Path.Combine(_dir, "o.safetensors"), """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("overrun", e.Message);
    }

    [Fact]
    public void Overlapping_tensors_name_both_keys()
    {
        var e = Fails(WriteRaw(Path.Combine(_dir, "v.safetensors"),
            """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16));
        Assert.Contains("overlap", e.Message);
        Assert.Contains("'w'", e.Message);
        Assert.Contains("'x'", e.Message);
    }

    [Fact]
    public void Missing_shard_names_the_index_and_the_shard()
    {
        File.Copy(Path.Combine(TestPaths.TinyFixture, "config.json"), Path.Combine(_dir, "config.json"));
        WriteValid("model-00001-of-00002.safetensors");
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"),
            """{"metadata":{},"weight_map":{"a.weight":"model-00001-of-00002.safetensors","c.weight":"model-00002-of-00002.safetensors"}}""");
        var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(_dir).Dispose());
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
        Assert.Contains("model.safetensors.index.json", e.Message);
    }

    [Fact]
    public void Sharded_folder_loads_every_key_from_its_shard()
    {
        File.Copy(Path.Combine(TestPaths.TinyFixture, "config.json"), Path.Combine(_dir, "config.json"));
        SafetensorsWriter.Write(Path.Combine(_dir, "model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["a.weight"] = torch.ones(2, 2) });
        SafetensorsWriter.Write(Path.Combine(_dir, "model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["b.weight"] = torch.full(3, 2f) });
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"),
            """{"metadata":{},"weight_map":{"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00002-of-00002.safetensors"}}""");
        using var ckpt = Checkpoint.Open(_dir);
        Assert.Equal(["a.weight", "b.weight"], ckpt.Keys.Order());
        using var b = ckpt.Read("b.weight");
        Assert.Equal(6f, b.sum().item<float>());
    }

    [Fact]
    public void Malformed_config_json_names_the_file()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), "{ \"vision_config\": ");
        WriteValid();
        var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(_dir).Dispose());
        Assert.Contains("config.json", e.Message);
        Assert.Contains("malformed JSON", e.Message);
    }

    [Fact]
    public void Config_field_of_the_wrong_type_names_the_field()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), """{"hidden_size": "big", "vision_config": {}}""");
        var e = Assert.Throws<CheckpointFormatException>(() => ConfigFile.Load(Path.Combine(_dir, "config.json")));
        Assert.Contains("hidden_size", e.Message);
    }

    [Fact]
    public void Missing_weights_file()
    {
        File.Copy(Path.Combine(TestPaths.TinyFixture, "config.json"), Path.Combine(_dir, "config.json"));
        var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(_dir).Dispose());
        Assert.Contains("model.safetensors", e.Message);
    }
}
