using SpatialMllm.Research.Models;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Tests.Video;
using SpatialMllm.Research.Video;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Sampling;

/// <summary>EncodeVideo's two halves, as a decode-ahead pipeline runs them: the CPU half on another thread, the encoders after.</summary>
public class VideoEncodingTests
{
    [Fact]
    public void DecodeVideoOnAWorkerThread_ThenEncodeDecoded_IsEncodeFramesOfTheSameFrames()
    {
        string path = TestVideos.Numbered(TestPaths.NewTempDir("decode-split"), "v.mkv", 30);
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        var sampler = FrameSampler.Uniform(4);

        DecodedVideo? decoded = null;
        var worker = new Thread(() => decoded = model.DecodeVideo(path, sampler));
        worker.Start();
        worker.Join();
        VideoFeatures split;
        using (decoded)
        {
            Assert.Equal(path, decoded!.Path);
            Assert.Equal([0, 10, 19, 29], decoded.Selection.Indices);
            Assert.Equal(["decode frames", "preprocess"], decoded.Timings.Select(t => t.Stage));
            Assert.Equal(DeviceType.CPU, decoded.Inputs.PixelValuesVideos.device_type);
            split = model.EncodeDecoded(decoded);
        }
        // The features outlive the decoded frames (a pipeline disposes those right after encoding).
        using (split)
        {
            using var frames = VideoSource.Open(path).ReadFrames([0, 10, 19, 29]);
            using var whole = model.EncodeFrames(frames);
            Assert.Equal(whole.Grid, split.Grid);
            Assert.Equal(whole.SecondPerGridT, split.SecondPerGridT);
            Assert.True(whole.FusedEmbeds.allclose(split.FusedEmbeds, rtol: 0, atol: 0), "the same frames must give the same tokens");
            Assert.Equal(["decode frames", .. whole.Timings.Select(t => t.Stage)], split.Timings.Select(t => t.Stage));
        }
    }
}
