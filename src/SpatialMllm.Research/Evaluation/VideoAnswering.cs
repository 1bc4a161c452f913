using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Sampling;

namespace SpatialMllm.Research.Evaluation;

/// <summary>A benchmark video: an .mp4 file, or (the seed's space-aware-sampling path) a folder of pre-selected PNG frames.</summary>
/// <param name="Key">"{dataset}/{scene}": the grouping and sharding key.</param>
internal sealed record BenchmarkVideo(string Key, string Path, bool IsFrameFolder);

/// <summary>How the answerer samples and decodes; the model-independent part of a run's configuration.</summary>
/// <param name="ResizedSize">An explicit frame size (ScanQA's resized_height/width 480×640); null: the pixel budget.</param>
/// <param name="SharePrefix">A video's questions share the prefilled prompt prefix (<see cref="AnswerOptions.SharePrefix"/>);
/// the answers are the same either way.</param>
internal sealed record AnswererOptions(int Frames, SamplerKind Sampler, int MaxNewTokens, (int Height, int Width)? ResizedSize = null,
    bool SharePrefix = true);

internal enum SamplerKind { Uniform, SpaceAware }

/// <summary>
/// A model that answers questions about videos. The runner prepares each video once (decoding, frame sampling and the
/// visual encoders run there) and asks all of that video's questions against the prepared features.
/// </summary>
internal interface IVideoAnswerer : IDisposable
{
    IPreparedVideo Prepare(BenchmarkVideo video);
}

/// <summary>One video's visual features, ready for any number of questions.</summary>
internal interface IPreparedVideo : IDisposable
{
    /// <summary>The model's raw text answer to the question text (the chat template is the answerer's business).</summary>
    string Answer(string prompt);
}

/// <summary>The single seam where the real model is plugged into evaluation.</summary>
internal static class AnswererFactory
{
    /// <summary>Loads the checkpoint in <paramref name="modelDir"/> on <paramref name="device"/> ("cpu", "cuda:0", …).</summary>
    public static IVideoAnswerer Create(string modelDir, string device, AnswererOptions options) =>
        new ModelAnswerer(SpatialMllmModel.Load(modelDir, TorchRuntime.ParseDevice(device)), modelDir, options);
}

/// <summary>
/// Spatial-MLLM (or plain Qwen2.5-VL) as an evaluation answerer: per video, frame sampling and the visual encoders run
/// once in <see cref="Prepare"/>; each question then only runs the decoder over the cached fused tokens.
/// </summary>
internal sealed class ModelAnswerer : IVideoAnswerer
{
    readonly SpatialMllmModel _model;
    readonly IFrameSampler _sampler;
    readonly AnswerOptions _answerOptions;

    public ModelAnswerer(SpatialMllmModel model, string modelDir, AnswererOptions options)
    {
        _model = model;
        // Space-aware selections are cached by video content, so a resumed run does not run VGGT again.
        _sampler = options.Sampler == SamplerKind.SpaceAware
            ? Sampling.FrameSampler.SpaceAware(options.Frames, modelDir).WithCache(SelectionCache.DefaultFolder)
            : Sampling.FrameSampler.Uniform(options.Frames);
        _answerOptions = new AnswerOptions(MaxNewTokens: options.MaxNewTokens, ResizedSize: options.ResizedSize, SharePrefix: options.SharePrefix);
    }

    public IPreparedVideo Prepare(BenchmarkVideo video) =>
        new Prepared(_model, _model.EncodeVideo(video.Path, _sampler, _answerOptions), _answerOptions);

    public void Dispose()
    {
        (_sampler as IDisposable)?.Dispose();
        _model.Dispose();
    }

    sealed class Prepared(SpatialMllmModel model, VideoFeatures features, AnswerOptions options) : IPreparedVideo
    {
        public string Answer(string prompt) => model.Answer(features, prompt, options).Text;

        public void Dispose() => features.Dispose();
    }
}

/// <summary>Another answerer's answers, Python-<c>.strip()</c>-ped as the seed's ScanQA evaluation saves them.</summary>
internal sealed class StrippedAnswers(IVideoAnswerer inner) : IVideoAnswerer
{
    public IPreparedVideo Prepare(BenchmarkVideo video) => new Prepared(inner.Prepare(video));

    public void Dispose() => inner.Dispose();

    sealed class Prepared(IPreparedVideo inner) : IPreparedVideo
    {
        public string Answer(string prompt) => PythonText.Strip(inner.Answer(prompt));

        public void Dispose() => inner.Dispose();
    }
}

/// <summary>
/// Answers without a model, deterministically from the video key and the question text: an option letter for a
/// multiple-choice prompt, a small number otherwise. For checking data paths, sharding, resume and merging on a
/// machine before spending GPU time; <paramref name="secondsPerAnswer"/> simulates a model's pace.
/// </summary>
internal sealed class DryRunAnswerer(double secondsPerAnswer = 0) : IVideoAnswerer
{
    public IPreparedVideo Prepare(BenchmarkVideo video)
    {
        if (video.IsFrameFolder ? !Directory.Exists(video.Path) : !File.Exists(video.Path))
            throw new FileNotFoundException($"Video not found: {video.Path}", video.Path);
        return new Prepared(video.Key, secondsPerAnswer);
    }

    public void Dispose() { }

    sealed class Prepared(string videoKey, double secondsPerAnswer) : IPreparedVideo
    {
        public string Answer(string prompt)
        {
            if (secondsPerAnswer > 0) Thread.Sleep(TimeSpan.FromSeconds(secondsPerAnswer));
            uint hash = Fnv1a(videoKey + "\n" + prompt);
            int options = prompt.Split('\n').Count(line => line.Length > 2 && line[1] == '.' && line[0] is >= 'A' and <= 'Z');
            return options > 0 ? ((char)('A' + hash % (uint)options)).ToString() : (1 + hash % 20).ToString();
        }

        public void Dispose() { }

        /// <summary>A hash that is the same in every process and run (string.GetHashCode is randomised per process).</summary>
        static uint Fnv1a(string s)
        {
            uint h = 2166136261;
            foreach (char c in s) { h ^= c; h *= 16777619; }
            return h;
        }
    }
}
