using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Tests.Scenes;

/// <summary>Space-aware sampling on a synthetic scene's true point maps: real geometry on the CPU, no VGGT.</summary>
public class GroundTruthSamplingTests(ITestOutputHelper log)
{
    static readonly SyntheticSceneOptions Options = new(Frames: 64, Width: 112, Height: 84);

    [Theory]
    [InlineData(7)]
    [InlineData(12)]
    public void Space_aware_sampling_covers_more_true_voxels_than_uniform_at_equal_frame_counts(int seed)
    {
        var scene = SyntheticScene.Create(seed, Options);
        var video = scene.AsVideoSource();
        foreach (int k in new[] { 4, 8, 16 })
        {
            using var sampler = scene.SpaceAwareSampler(k, candidates: 64);
            var spaceAware = sampler.Select(video);
            var uniform = FrameSampler.Uniform(k).Select(video);
            var diagnostics = spaceAware.SpaceAware!;

            // Every point valid (confidence 1); the selector's own voxel rule (shortest side of the seen points' box / 20),
            // and the seen points lie in the room.
            Assert.Equal(1f, diagnostics.ConfidenceThreshold);
            double shortestSide = Math.Min(scene.Room.Height, Math.Min(scene.Room.Width, scene.Room.Depth));
            Assert.InRange(diagnostics.VoxelSize, 0.5 * shortestSide / SpaceAwareSelector.VoxelsAlongShortestSide, (shortestSide + 1e-3) / SpaceAwareSelector.VoxelsAlongShortestSide);
            Assert.All(diagnostics.BoundsMin, v => Assert.True(v > -1e-3));
            Assert.Equal(k, spaceAware.Indices.Count);
            int spaceAwareVoxels = spaceAware.CoverageCurveOf(spaceAware)[^1];
            int uniformVoxels = spaceAware.CoverageCurveOf(uniform)[^1];
            log.WriteLine($"seed {seed}, k = {k}: space-aware {spaceAwareVoxels}, uniform {uniformVoxels} of {diagnostics.TotalVoxels} voxels");
            Assert.True(spaceAwareVoxels > uniformVoxels, $"k = {k}: space-aware covers {spaceAwareVoxels} voxels, uniform {uniformVoxels}");
        }
    }

    [Fact]
    public void The_scene_mp4_samples_like_the_rendered_source_and_another_video_is_refused()
    {
        var scene = SyntheticScene.Create(7, Options with { Frames = 24 });
        string path = scene.WriteVideo(Path.Combine(TestPaths.NewTempDir("scene-sampling"), "scene.mp4"));
        using var sampler = scene.SpaceAwareSampler(6, candidates: 24);

        var fromFile = sampler.Select(VideoSource.Open(path));
        var fromSource = sampler.Select(scene.AsVideoSource());
        Assert.Equal(fromSource.Indices, fromFile.Indices);
        Assert.Equal(fromSource.SpaceAware!.CoverageCurve, fromFile.SpaceAware!.CoverageCurve);
        var (cloud, firstFrame) = fromFile.CoveredCloud();
        Assert.Equal(cloud.shape[0], firstFrame.shape[0]);
        Assert.True(cloud.shape[0] > 0);

        var other = SyntheticScene.Create(7, Options with { Frames = 30 });
        var error = Assert.Throws<ArgumentException>(() => sampler.Select(other.AsVideoSource()));
        Assert.Contains("30 frames", error.Message);
        Assert.Contains("seed0007", error.Message);
    }
}
