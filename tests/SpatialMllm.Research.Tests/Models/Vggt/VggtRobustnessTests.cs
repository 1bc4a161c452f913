using SpatialMllm.Research.Models.Vggt;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Vggt;

/// <summary>Memory behaviour, bf16 and input validation of the tiny VGGT.</summary>
[Collection(TinyFixtureCollection.Name)]
public sealed class VggtRobustnessTests(TinyFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public void Repeated_aggregator_forwards_do_not_leak_tensors()
    {
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        using (var warmUp = fixture.Vggt.aggregator.ForwardLayer(fixture.Frames)) { }
        long before = stats.ThreadTotalLiveCount;
        for (int i = 0; i < 100; i++)
        {
            using var layer = fixture.Vggt.aggregator.ForwardLayer(fixture.Frames);
        }
        long after = stats.ThreadTotalLiveCount;
        output.WriteLine($"live tensors before {before}, after 100 forwards {after}");
        Assert.Equal(before, after);
    }

    [Fact]
    public void Full_model_forward_does_not_leak_tensors()
    {
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        using (fixture.Vggt.forward(fixture.Frames)) { }
        long before = stats.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++)
        {
            using var predictions = fixture.Vggt.forward(fixture.Frames);
            var (points, conf) = fixture.Vggt.Predict(fixture.Frames);
            points.Dispose();
            conf.Dispose();
        }
        Assert.Equal(before, stats.ThreadTotalLiveCount);
    }

    [Fact]
    public void Bfloat16_forward_is_close_to_float32()
    {
        using var scope = torch.NewDisposeScope();
        using var bf16 = new VggtModel(fixture.Checkpoint.Config.Spatial!, dtype: ScalarType.BFloat16);
        bf16.LoadWeights(fixture.Checkpoint).ThrowIfIncomplete("bf16 VGGT");
        bf16.eval();

        var reference = TinyFixture.Read("spatial_tokens_last");
        var tokens = bf16.aggregator.ForwardLayer(fixture.Frames);
        Assert.Equal(ScalarType.BFloat16, tokens.dtype);
        double tokenError = TensorComparison.MaxError(reference, tokens);
        double tokenScale = reference.abs().max().item<float>();
        output.WriteLine($"bf16 spatial_tokens_last: max error {tokenError:E2} (values up to {tokenScale:F2})");
        Assert.True(tokenError < 0.1, $"bf16 aggregator error {tokenError}");

        using var predictions = bf16.forward(fixture.Frames);
        foreach (var (name, actual) in new[]
        {
            ("vggt_pose_enc", predictions.PoseEncoding), ("vggt_depth", predictions.Depth),
            ("vggt_world_points", predictions.WorldPoints), ("vggt_world_points_conf", predictions.WorldPointsConfidence),
        })
        {
            double error = TensorComparison.MaxError(TinyFixture.Read(name), actual);
            output.WriteLine($"bf16 {name}: max error {error:E2}");
            Assert.True(error < 0.1, $"bf16 {name} error {error}");
        }
    }

    [Theory]
    [InlineData(new long[] { 3, 84, 112 }, "[S, 3, H, W]")]
    [InlineData(new long[] { 4, 1, 84, 112 }, "3 colour channels")]
    [InlineData(new long[] { 4, 3, 80, 112 }, "divisible by the patch size 14")]
    public void Wrong_image_shapes_are_rejected_clearly(long[] shape, string message)
    {
        using var scope = torch.NewDisposeScope();
        var images = torch.zeros(shape);
        var e = Assert.ThrowsAny<ArgumentException>(() => fixture.Vggt.aggregator.ForwardLayer(images));
        Assert.Contains(message, e.Message);
        Assert.Contains($"[{string.Join(", ", shape)}]", e.Message);
    }

    [Fact]
    public void Unknown_layer_is_rejected_clearly()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => fixture.Vggt.aggregator.ForwardLayer(fixture.Frames, 4));
        Assert.Contains("depth 4", e.Message);
    }
}
