using SpatialMllm.Research.Models;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Tests.Video;
using SpatialMllm.Research.Video;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Sampling;

/// <summary>Samplers written the way a notebook cell would: a small class, or a function.</summary>
public class CellSamplerTests
{
    /// <summary>Every other frame of the first half: what a researcher might try in a cell.</summary>
    sealed class FirstHalf(int frames) : IFrameSampler
    {
        public string Settings => $"first-half(n={frames})";

        public FrameSelection Select(VideoSource video) =>
            FrameSelection.Of(Settings, video.Info.FrameCount, Enumerable.Range(0, frames).Select(i => i * video.Info.FrameCount / (2 * frames)));
    }

    [Fact]
    public void A_sampler_class_written_inline_feeds_the_model()
    {
        string dir = TestPaths.NewTempDir("cell-sampler");
        string path = TestVideos.Numbered(dir, "v.mkv", 40);
        var selection = new FirstHalf(4).Select(VideoSource.Open(path));
        Assert.Equal([0, 5, 10, 15], selection.Indices);
        Assert.Equal("first-half(n=4)", selection.Sampler);

        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var features = model.EncodeVideo(path, new FirstHalf(4));
        Assert.Equal(2, features.Grid.T);   // 4 frames → 2 temporal patches
    }

    [Fact]
    public void A_sampler_from_a_function_validates_what_it_chose()
    {
        string dir = TestPaths.NewTempDir("cell-sampler-fn");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "v.mkv", 20));
        var last = FrameSampler.FromFunction("last(4)", v => Enumerable.Range(v.Info.FrameCount - 4, 4).Reverse());
        Assert.Equal([16, 17, 18, 19], last.Select(video).Indices);
        var outside = FrameSampler.FromFunction("outside", v => [0, v.Info.FrameCount]);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => outside.Select(video));
        Assert.Contains("frame 20 is outside the source's 20 frames", e.Message);
    }
}
