using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Tests.Video;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Tests.Sampling;

public class UniformSamplingTests
{
    [Theory]
    [InlineData(16, 16)]
    [InlineData(3, 4)]  // round(1.5) = 2
    [InlineData(5, 4)]  // round(2.5) = 2: half to even
    [InlineData(7, 8)]
    [InlineData(2, 2)]
    public void Frame_count_rounds_to_even_like_python(int asked, int used) =>
        Assert.Equal($"uniform(n={used})", FrameSampler.Uniform(asked).Settings);

    static int[] Uniform(int total, int n) => VideoFrameSampling.Indices(0, total - 1, n).Select(i => (int)i).ToArray();

    [Fact]
    public void Rounded_linspace_rounds_half_to_even()
    {
        Assert.Equal(new[] { 0, 2, 3 }, Uniform(4, 3));   // 0, 1.5, 3
        Assert.Equal(new[] { 0, 2, 5 }, Uniform(6, 3));   // 0, 2.5, 5
        Assert.Equal(new[] { 0, 2, 5, 7 }, Uniform(8, 4));
    }

    [Fact]
    public void Sixteen_frames_match_the_exact_rule_for_every_length()
    {
        // For even n no value of i·(N−1)/(n−1) is exactly .5 away from an integer, so float32 and exact agree.
        for (int total = 16; total <= 3000; total++)
        {
            int[] expected = Enumerable.Range(0, 16).Select(i => (int)Math.Round(i * (total - 1) / 15.0, MidpointRounding.ToEven)).ToArray();
            Assert.Equal(expected, Uniform(total, 16));
        }
    }

    [Fact]
    public void Truncated_linspace_is_numpy_linspace_with_integer_dtype()
    {
        Assert.Equal(new[] { 0, 14, 28, 42, 56, 70, 84, 99 }, FrameIndexRules.TruncatedLinspace(100, 8));
        Assert.Equal(new[] { 0, 5, 11, 16, 22, 27, 33, 39 }, FrameIndexRules.TruncatedLinspace(40, 8));
        Assert.Equal(Enumerable.Range(0, 50), FrameIndexRules.TruncatedLinspace(50, 50));
        Assert.Equal(new[] { 0 }, FrameIndexRules.TruncatedLinspace(1, 1));
        int[] scannet = FrameIndexRules.TruncatedLinspace(1000, 128);
        Assert.Equal(128, scannet.Length);
        Assert.Equal((0, 7, 999), (scannet[0], scannet[1], scannet[^1])); // step 999/127 = 7.87
    }

    [Fact]
    public void Uniform_sampler_on_a_video_reads_the_reference_frames()
    {
        string dir = TestPaths.NewTempDir("sampling-uniform");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "n.mkv", frames: 30));

        FrameSelection selection = FrameSampler.Uniform(5).Select(video);

        Assert.Equal("uniform(n=4)", selection.Sampler);
        Assert.Equal(new[] { 0, 10, 19, 29 }, selection.Indices); // 0, 9.67, 19.33, 29
        Assert.Equal(30, selection.SourceFrameCount);
        Assert.Null(selection.SpaceAware);
    }

    [Fact]
    public void Uniform_sampler_refuses_more_frames_than_the_video_has()
    {
        string dir = TestPaths.NewTempDir("sampling-uniform-short");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "one.mkv", frames: 1));
        var error = Assert.Throws<ArgumentException>(() => FrameSampler.Uniform(16).Select(video));
        Assert.Contains("one.mkv", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => FrameSampler.Uniform(1));
    }
}
