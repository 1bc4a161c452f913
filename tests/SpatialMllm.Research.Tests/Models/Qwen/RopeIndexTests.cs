using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Qwen;

[Collection(TinyFixtureCollection.Name)]
public class RopeIndexTests(TinyFixture fixture)
{
    [Fact]
    public void Fractional_seconds_per_grid_are_truncated_before_scaling()
    {
        var tokens = fixture.Checkpoint.Config.Tokens;
        // 2 text tokens, vision_start, 2×(1×1) merged video tokens, vision_end, 1 text token.
        long[] ids = [5, 6, tokens.VisionStartTokenId, tokens.VideoTokenId, tokens.VideoTokenId, tokens.VisionEndTokenId, 7];
        using var input = torch.tensor(ids).view(1, -1);
        using var grid = torch.tensor(new long[] { 2, 2, 2 }).view(1, 3);
        using var seconds = torch.tensor(new[] { 2.5f });
        var (positions, deltas) = RopeIndex.Compute(input, tokens, fixture.Checkpoint.Config.Vision, grid, seconds);
        using var _p = positions;
        using var _d = deltas;
        // t step = (long)2.5 · tokens_per_second 2 = 4: video t ∈ {3, 7}; text resumes at max + 1 = 8.
        Assert.Equal(new long[] { 0, 1, 2, 3, 7, 8, 9 }, TensorComparison.Longs(positions[0]));
        Assert.Equal(new long[] { 0, 1, 2, 3, 3, 8, 9 }, TensorComparison.Longs(positions[1]));
        Assert.Equal(new long[] { 10 - 7 }, TensorComparison.Longs(deltas));
    }

    [Fact]
    public void Text_only_positions_are_1d_with_zero_delta()
    {
        using var input = torch.tensor(new long[] { 1, 2, 3, 4 }).view(1, -1);
        var (positions, deltas) = RopeIndex.Compute(input, fixture.Checkpoint.Config.Tokens, fixture.Checkpoint.Config.Vision);
        using var _p = positions;
        using var _d = deltas;
        Assert.Equal(new long[] { 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3 }, TensorComparison.Longs(positions));
        Assert.Equal(new long[] { 0 }, TensorComparison.Longs(deltas));
    }
}
