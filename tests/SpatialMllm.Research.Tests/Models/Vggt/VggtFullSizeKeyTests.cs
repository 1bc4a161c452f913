using System.Text.Json;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Models.Vggt;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Vggt;

/// <summary>
/// The full-size (VGGT-1B, 3B connector) module trees, built on the meta device, against the released
/// checkpoint's key list (data/configs/spatial-mllm-v1.1-keys.json): same names, same shapes.
/// </summary>
public sealed class VggtFullSizeKeyTests
{
    static Dictionary<string, long[]> ReleasedKeys()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.Data, "configs", "spatial-mllm-v1.1-keys.json")));
        return doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(x => x.GetInt64()).ToArray());
    }

    static void AssertSameKeys(Dictionary<string, long[]> released, string prefix, nn.Module module, Func<string, bool> skipped)
    {
        var expected = released.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal) && !skipped(kv.Key))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        var actual = module.state_dict().ToDictionary(kv => prefix + kv.Key, kv => kv.Value.shape);
        Assert.Empty(expected.Keys.Except(actual.Keys).Order());
        Assert.Empty(actual.Keys.Except(expected.Keys).Order());
        foreach (var (key, shape) in expected) Assert.True(shape.SequenceEqual(actual[key]), $"{key}: [{string.Join(", ", shape)}] vs [{string.Join(", ", actual[key])}]");
    }

    [Fact]
    public void Vggt_1B_on_meta_has_the_released_keys_and_shapes_except_the_track_head()
    {
        var released = ReleasedKeys();
        using var model = new VggtModel(SpatialEncoderConfig.Vggt1B, device: torch.device("meta"));
        AssertSameKeys(released, VggtModel.CheckpointPrefix, model, key => key.StartsWith(VggtModel.CheckpointPrefix + "track_head.", StringComparison.Ordinal));
        Assert.Contains(released.Keys, k => k.StartsWith(VggtModel.CheckpointPrefix + "track_head.", StringComparison.Ordinal));
    }

    [Fact]
    public void Connector_on_meta_has_the_released_keys_and_shapes()
    {
        using var connector = new MlpAddConnector(2048, 2048, device: torch.device("meta"));
        Assert.Equal(16384, connector.MergedDim);
        AssertSameKeys(ReleasedKeys(), SpatialConnectors.CheckpointPrefix, connector, _ => false);
    }
}
