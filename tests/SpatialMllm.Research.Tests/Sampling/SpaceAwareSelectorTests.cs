using SpatialMllm.Research.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Sampling;

public class SpaceAwareSelectorTests
{
    static string IoFixture => Path.Combine(TestPaths.TinyFixture, "io.safetensors");

    [Theory]
    [InlineData(4)]
    [InlineData(8)]
    [InlineData(16)]
    public void Planted_geometry_selects_the_reference_frames(int k)
    {
        using var scope = torch.NewDisposeScope();
        Tensor points = TinyFixture.Read("sa_planted_world_points");
        Tensor conf = TinyFixture.Read("sa_planted_world_points_conf");
        int[] expected = TinyFixture.Read($"sa_selected_planted_k{k}").data<long>().Select(i => (int)i).ToArray();

        var result = SpaceAwareSelector.Select(points, conf, k);

        Assert.Equal(expected, result.Selected);
        Assert.Equal(expected, result.PickOrder.Order());
        Assert.Equal(24, result.Diagnostics.VoxelsPerCandidate.Count);
        Assert.Equal(result.PickOrder.Count, result.Diagnostics.CoverageCurve.Count);
    }

    [Fact]
    public void Planted_geometry_diagnostics_are_consistent()
    {
        using var scope = torch.NewDisposeScope();
        Tensor points = TinyFixture.Read("sa_planted_world_points");
        Tensor conf = TinyFixture.Read("sa_planted_world_points_conf");

        var d = SpaceAwareSelector.Select(points, conf, 16, cloudPoints: 1000).Diagnostics;

        // Threshold: the median of 24·10·12 = 2880 values (even count: halfway between the middle two).
        float[] sorted = conf.reshape(-1).sort().Values.data<float>().ToArray();
        Assert.Equal((float)(sorted[1440] - (sorted[1440] - (double)sorted[1439]) * 0.5), d.ConfidenceThreshold);
        Tensor valid = (conf >= d.ConfidenceThreshold) & (conf > 0.1f);
        Tensor validPoints = points[valid];
        Assert.Equal(validPoints.amin(0).data<float>().ToArray(), d.BoundsMin);
        Assert.Equal(validPoints.amax(0).data<float>().ToArray(), d.BoundsMax);
        Assert.Equal(d.BoundsMax.Zip(d.BoundsMin, (hi, lo) => hi - lo).Min() / 20f, d.VoxelSize);
        // The coverage curve rises strictly and cannot exceed the voxels seen; the first pick is the frame seeing the most.
        Assert.True(d.CoverageCurve.Zip(d.CoverageCurve.Skip(1), (a, b) => b > a).All(up => up));
        Assert.True(d.CoverageCurve[^1] <= d.TotalVoxels);
        Assert.Equal(d.VoxelsPerCandidate.Max(), d.CoverageCurve[0]);
        // Cloud: every 3rd of 2880 points, masks as computed above.
        Assert.Equal(960, d.Cloud.X.Count);
        Assert.Equal(valid.reshape(-1)[torch.arange(0, 2880, 3)].data<bool>().ToArray(), d.Cloud.Valid);
        Assert.Equal(points[1, 0, 3, 2].item<float>(), d.Cloud.Z[(120 + 3) / 3]);
        Assert.Equal(1, d.Cloud.Candidate[(120 + 3) / 3]);
    }

    [Fact]
    public void Ties_go_to_the_lowest_frame_and_selection_stops_when_nothing_new_is_seen()
    {
        // Frames 0 and 2 see the same two voxels, frame 1 sees one of them, frame 3 sees a third voxel only.
        // Greedy: frame 0 (gain 2, tie with 2 → lowest), then frame 3 (gain 1), then nothing new: stop at 2 picks.
        float[,] xyz = { { 0, 0, 0 }, { 20, 20, 20 }, { 0, 0, 0 }, { 0, 0, 0 }, { 0, 0, 0 }, { 20, 20, 20 }, { 10, 10, 10 }, { 10, 10, 10 } };
        using var points = torch.tensor(xyz).reshape(4, 1, 2, 3);
        using var conf = torch.full(4, 1, 2, 1f);

        var result = SpaceAwareSelector.Select(points, conf, k: 4);

        Assert.Equal(new[] { 0, 3 }, result.PickOrder);
        Assert.Equal(new[] { 0, 3 }, result.Selected);
        Assert.Equal(new[] { 2, 1, 2, 1 }, result.Diagnostics.VoxelsPerCandidate);
        Assert.Equal(new[] { 2, 3 }, result.Diagnostics.CoverageCurve);
        Assert.Equal(1f, result.Diagnostics.VoxelSize);
    }

    [Fact]
    public void Confidence_mask_needs_at_least_the_median_and_more_than_a_tenth()
    {
        // Confidences 0.05 ×3 and 2 ×1: the median is 0.05, so only the 2.0 point passes (0.05 ≤ 0.1).
        using var conf = torch.tensor(new[] { 0.05f, 0.05f, 2f, 0.05f }).reshape(1, 2, 2);
        Assert.Equal(0.05f, SpaceAwareSelector.MedianAsNumpyPercentile(conf));
        using var points = torch.tensor(new float[] { 0, 0, 0, 9, 9, 9, 1, 2, 3, 5, 5, 5 }).reshape(1, 2, 2, 3);

        var error = Assert.Throws<InvalidOperationException>(() => SpaceAwareSelector.Select(points, conf, 2));
        Assert.Contains("no extent", error.Message); // one valid point: a zero-size bounding box
    }

    [Fact]
    public void Median_follows_numpy_linear_interpolation()
    {
        using var odd = torch.tensor(new[] { 3f, 1f, 2f });
        using var even = torch.tensor(new[] { 4f, 1f, 3f, 2f });
        Assert.Equal(2f, SpaceAwareSelector.MedianAsNumpyPercentile(odd));
        Assert.Equal(2.5f, SpaceAwareSelector.MedianAsNumpyPercentile(even));
    }

    [Fact]
    public void Cloud_records_the_pick_that_first_covered_each_point()
    {
        // As the tie test, with frame 1's second point below the confidence threshold: picks frame 0, then frame 3.
        float[,] xyz = { { 0, 0, 0 }, { 20, 20, 20 }, { 0, 0, 0 }, { 0, 0, 0 }, { 0, 0, 0 }, { 20, 20, 20 }, { 10, 10, 10 }, { 10, 10, 10 } };
        using var points = torch.tensor(xyz).reshape(4, 1, 2, 3);
        using var conf = torch.tensor(new[] { 1f, 1f, 1f, 0.05f, 1f, 1f, 1f, 1f }).reshape(4, 1, 2);

        var all = SpaceAwareSelector.Select(points, conf, k: 4);
        var one = SpaceAwareSelector.Select(points, conf, k: 1);

        Assert.Equal(new[] { 0, 3 }, all.PickOrder);
        Assert.Equal(new[] { 0, 0, 0, -1, 0, 0, 1, 1 }, all.Diagnostics.Cloud.CoveredAtPick);
        Assert.Equal(new[] { 0, 0, 0, -1, 0, 0, -1, -1 }, one.Diagnostics.Cloud.CoveredAtPick); // frame 3's voxel never covered

        // Candidates 10, 20, 30, 40: the covered points coloured by the source frame number that covered them first.
        var selection = new FrameSelection("test", 50, [10, 40], [10, 20, 30, 40], [10, 40], SpaceAware: all.Diagnostics);
        var (cloud, frame) = selection.CoveredCloud();
        Assert.Equal(new long[] { 7, 3 }, cloud.shape);
        Assert.Equal(new[] { 10f, 10f, 10f, 10f, 10f, 40f, 40f }, frame.data<float>().ToArray());
        Assert.Equal(new[] { 10f, 10f, 10f }, cloud[6].data<float>().ToArray());
        Assert.Throws<InvalidOperationException>(() => (selection with { SpaceAware = null }).CoveredCloud());

        // Coverage of other frame choices on the same voxel grid: voxels 0 = (0,0,0), 1 = (10,…), 2 = (20,…).
        Assert.Equal([[0, 2], [0], [0, 2], [1]], all.Diagnostics.VoxelsOfCandidate!);
        Assert.Equal(all.Diagnostics.CoverageCurve, all.Diagnostics.CoverageCurveOf([0, 3]));
        Assert.Equal(new[] { 1, 2, 3 }, all.Diagnostics.CoverageCurveOf([1, 2, 3]));
        var uniform = new FrameSelection("uniform", 50, [12, 29], [12, 29], [12, 29]); // nearest candidates: 10, 30
        Assert.Equal(new[] { 2, 2 }, selection.CoverageCurveOf(uniform));
    }

    [Fact]
    public void Shapes_are_checked()
    {
        using var points = torch.zeros(2, 3, 4, 3);
        using var conf = torch.zeros(2, 3, 5);
        Assert.Throws<ArgumentException>(() => SpaceAwareSelector.Select(points, conf, 1));
    }
}
