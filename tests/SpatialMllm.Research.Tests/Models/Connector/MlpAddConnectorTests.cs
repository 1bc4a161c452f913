using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Connector;

public sealed class MlpAddConnectorTests(ITestOutputHelper output)
{
    static string Fixture => TestPaths.TinyFixture;

    static (MlpAddConnector Connector, LoadReport Report) LoadTiny(Checkpoint checkpoint, ScalarType? dtype = null)
    {
        var config = checkpoint.Config;
        var connector = new MlpAddConnector(2 * config.Spatial!.EmbedDim, config.Vision.OutHiddenSize, dtype: dtype);
        var report = StateDictLoader.Load(connector, checkpoint, SpatialConnectors.CheckpointPrefix);
        return (connector, report);
    }

    [Fact]
    public void The_connector_loads_every_tensor_under_its_prefix()
    {
        // Its output against the reference: FixtureParityTests (fused_embeds).
        using var checkpoint = Checkpoint.Open(Fixture);
        var (connector, report) = LoadTiny(checkpoint);
        using var _ = connector;
        Assert.Empty(report.Missing);
        Assert.Empty(report.Unexpected);
        Assert.Equal(5, report.Loaded.Count);
    }

    [Fact]
    public void Bfloat16_connector_is_close_to_float32()
    {
        using var checkpoint = Checkpoint.Open(Fixture);
        using var io = SafetensorsFile.Open(Path.Combine(Fixture, "io.safetensors"));
        var (connector, report) = LoadTiny(checkpoint, ScalarType.BFloat16);
        using var _ = connector;
        report.ThrowIfIncomplete("connector");
        using var scope = torch.NewDisposeScope();
        var fused = connector.forward(io.Read("vision_embeds", ScalarType.BFloat16), io.Read("spatial_tokens_last", ScalarType.BFloat16), 5, new GridThw(2, 6, 8));
        Assert.Equal(ScalarType.BFloat16, fused.dtype);
        double error = TensorComparison.MaxError(io.Read("fused_embeds"), fused);
        output.WriteLine($"bf16 fused_embeds: max error {error:E2}");
        Assert.True(error < 0.05, $"bf16 connector error {error}");
    }

    [Fact]
    public void Merge_uses_the_reference_feature_order()
    {
        // Value = a code of (frame, row, col, channel), so every output element says where it came from.
        const int frames = 4, gh = 4, gw = 6, d = 3, special = 5;
        using var scope = torch.NewDisposeScope();
        var codes = torch.arange(frames * gh * gw * d, dtype: ScalarType.Float64).view(frames, gh * gw, d);
        var tokens = torch.cat([torch.full(frames, special, d, -1.0, dtype: ScalarType.Float64), codes], dim: 1);
        using var connector = new MlpAddConnector(d, 8, device: torch.device("meta"));
        var merged = connector.MergeSpatialTokens(tokens, special, frames / 2, gh, gw);
        Assert.Equal(new long[] { frames / 2 * (gh / 2) * (gw / 2), 8 * d }, merged.shape);
        var values = merged.data<double>().ToArray();
        int row = 0;
        for (int t = 0; t < frames / 2; t++)
        for (int i = 0; i < gh / 2; i++)
        for (int j = 0; j < gw / 2; j++, row++)
        for (int sh = 0; sh < 2; sh++)
        for (int sw = 0; sw < 2; sw++)
        for (int c = 0; c < d; c++)
        for (int tt = 0; tt < 2; tt++)
        {
            int feature = ((sh * 2 + sw) * d + c) * 2 + tt;
            int frame = 2 * t + tt, patch = (2 * i + sh) * gw + (2 * j + sw);
            Assert.Equal((double)((frame * gh * gw + patch) * d + c), values[row * 8 * d + feature]);
        }
    }

    [Fact]
    public void Wrong_shapes_name_both_shapes()
    {
        using var scope = torch.NewDisposeScope();
        using var connector = new MlpAddConnector(4, 8);
        var vision = torch.zeros(6, 8);

        var odd = Assert.Throws<ArgumentException>(() => connector.forward(vision, torch.zeros(3, 5 + 24, 4), 5, new GridThw(2, 4, 6)));
        Assert.Contains("even number of frames", odd.Message);
        Assert.Contains("[3, 29, 4]", odd.Message);
        Assert.Contains("t=2, h=4, w=6", odd.Message);

        var grid = Assert.Throws<ArgumentException>(() => connector.forward(vision, torch.zeros(4, 5 + 20, 4), 5, new GridThw(2, 4, 6)));
        Assert.Contains("20 patches", grid.Message);
        Assert.Contains("[4, 25, 4]", grid.Message);
        Assert.Contains("4×6", grid.Message);

        var embeds = Assert.Throws<ArgumentException>(() => connector.forward(torch.zeros(5, 8), torch.zeros(4, 5 + 24, 4), 5, new GridThw(2, 4, 6)));
        Assert.Contains("[5, 8]", embeds.Message);
        Assert.Contains("[4, 29, 4]", embeds.Message);
    }
}
