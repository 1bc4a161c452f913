using System.Diagnostics;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Sampling;

/// <summary>A model on a video file or frame folder: sample frames, decode them, encode (and answer).</summary>
public static class VideoEncoding
{
    /// <summary>Samples (16 uniform frames by default) and decodes frames of a video file or frame folder, then encodes them.</summary>
    public static VideoFeatures EncodeVideo(this SpatialMllmModel model, string videoPath, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        var clock = Stopwatch.StartNew();
        var video = VideoSource.Open(videoPath);
        var selection = (sampler ?? FrameSampler.Uniform(16)).Select(video);
        using var frames = video.ReadFrames(selection.Indices);
        var decode = new StageTiming("decode frames", clock.Elapsed.TotalMilliseconds);
        var features = model.EncodeFrames(frames, options);
        return new VideoFeatures(features.FusedEmbeds, features.Grid, features.SecondPerGridT, [decode, .. features.Timings], features.Fusion);
    }

    /// <summary>Answers a question about a video file or frame folder (16 uniformly sampled frames by default).</summary>
    public static Answer Answer(this SpatialMllmModel model, string videoPath, string question, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        using var features = model.EncodeVideo(videoPath, sampler, options);
        return model.Answer(features, question, options);
    }
}
