using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Qwen;

[Collection(TinyFixtureCollection.Name)]
public class Qwen2VisionTransformerTests(TinyFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public void Checkpoint_keys_under_visual_all_load()
    {
        fixture.VisionReport.ThrowIfIncomplete("visual.");
        Assert.Equal(54, fixture.VisionReport.Loaded.Count);
    }

    [Fact]
    public void Bfloat16_vision_embeds_stay_close_to_float32()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        using var vision = new Qwen2VisionTransformer(fixture.Checkpoint.Config.Vision, dtype: ScalarType.BFloat16);
        StateDictLoader.Load(vision, fixture.Checkpoint, "visual.").ThrowIfIncomplete("visual.");
        var embeds = vision.forward(TinyFixture.Read("pixel_values_videos"), TinyFixture.Read("video_grid_thw"));
        Assert.Equal(ScalarType.BFloat16, embeds.dtype);
        var expected = TinyFixture.Read("vision_embeds");
        double maxAbs = (embeds.to(ScalarType.Float32) - expected).abs().max().item<float>(), scale = expected.abs().max().item<float>();
        output.WriteLine($"bf16 vision_embeds: max abs error {maxAbs:E2} (values up to ±{scale:F3})");
        Assert.True(maxAbs < 0.05 * Math.Max(1, scale), $"bf16 max abs error {maxAbs}");
    }

    [Fact]
    public void Two_videos_in_one_call_equal_two_separate_calls()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var pixels = TinyFixture.Read("pixel_values_videos");
        var grid = TinyFixture.Read("video_grid_thw");
        var single = fixture.Vision.forward(pixels, grid);
        // A second, smaller video: the first temporal slice only (its 48 patches).
        var firstSlice = pixels.narrow(0, 0, 48);
        var smallGrid = torch.tensor(new long[] { 1, 6, 8 }).view(1, 3);
        var small = fixture.Vision.forward(firstSlice, smallGrid);
        var both = fixture.Vision.forward(torch.cat([pixels, firstSlice], 0), torch.cat([grid, smallGrid], 0));
        Assert.True(TensorComparison.MaxError(torch.cat([single, small], 0), both) < 1e-5);
    }

    [Fact]
    public void A_grid_that_divides_into_windows_runs()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        // 4×4 merged units tile exactly into 2×2 windows (the reference pads a whole empty window here).
        var grid = torch.tensor(new long[] { 1, 8, 8 }).view(1, 3);
        var pixels = torch.randn(64, 1176, generator: new torch.Generator(7, torch.CPU));
        var embeds = fixture.Vision.forward(pixels, grid);
        Assert.Equal(new long[] { 16, 64 }, embeds.shape);
        Assert.False(embeds.isnan().any().item<bool>());
    }

    [Fact]
    public void Mismatched_grid_is_a_clear_error()
    {
        using var _ = torch.no_grad();
        using var pixels = TinyFixture.Read("pixel_values_videos");
        using var grid = torch.tensor(new long[] { 2, 6, 6 }).view(1, 3);
        var e = Assert.Throws<ArgumentException>(() => fixture.Vision.forward(pixels, grid));
        Assert.Contains("72 patches", e.Message);
    }
}
