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
/// <param name="BatchSize">At most this many questions of a video decoded together (<see cref="AnswerOptions.BatchSize"/>);
/// the answers are the same for any size.</param>
internal sealed record AnswererOptions(int Frames, SamplerKind Sampler, int MaxNewTokens, (int Height, int Width)? ResizedSize = null,
    bool SharePrefix = true, int BatchSize = 32);

internal enum SamplerKind { Uniform, SpaceAware }

/// <summary>
/// A model that answers questions about videos, in two stages per video so that a runner can overlap them:
/// <see cref="Decode"/> (the CPU's part) may run ahead on worker threads while the device encodes and answers the video
/// before; <see cref="IDecodedVideo.Encode"/> (the device's part) and the answers run on the runner's thread.
/// </summary>
internal interface IVideoAnswerer : IDisposable
{
    /// <summary>Opens the video, chooses and decodes its frames and preprocesses them. Called from worker threads, for
    /// several videos at once: it must be thread-safe.</summary>
    IDecodedVideo Decode(BenchmarkVideo video);
}

/// <summary>A video decoded by <see cref="IVideoAnswerer.Decode"/>, holding its frames until it is encoded.</summary>
internal interface IDecodedVideo : IDisposable
{
    /// <summary>Runs the visual encoders; the result answers the video's questions. This object may be disposed right after.</summary>
    IPreparedVideo Encode();
}

/// <summary>One video's visual features, ready for its questions.</summary>
internal interface IPreparedVideo : IDisposable
{
    /// <summary>The model's raw text answers to the question texts, in their order (the chat template is the answerer's
    /// business); the questions of a video come together so that they can be decoded as a batch.</summary>
    IReadOnlyList<string> Answer(IReadOnlyList<string> prompts);
}

/// <summary>The single seam where the real model is plugged into evaluation.</summary>
internal static class AnswererFactory
{
    /// <summary>Loads the checkpoint in <paramref name="modelDir"/> on <paramref name="device"/> ("cpu", "cuda:0", …).</summary>
    public static IVideoAnswerer Create(string modelDir, string device, AnswererOptions options) =>
        new ModelAnswerer(SpatialMllmModel.Load(modelDir, TorchRuntime.ParseDevice(device)), modelDir, options);
}

/// <summary>
/// Spatial-MLLM (or plain Qwen2.5-VL) as an evaluation answerer: per video, frame sampling, decoding and preprocessing
/// (<see cref="SpatialMllmModel.DecodeVideo"/>, on the CPU) then the visual encoders (<see cref="SpatialMllmModel.EncodeDecoded"/>)
/// run once; the video's questions are then answered together over the cached fused tokens
/// (<see cref="SpatialMllmModel.AnswerAll"/>).
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
        _answerOptions = new AnswerOptions(MaxNewTokens: options.MaxNewTokens, ResizedSize: options.ResizedSize, SharePrefix: options.SharePrefix,
            BatchSize: options.BatchSize);
        _ = model.Processor;   // made here, not raced for by the first decoding threads
    }

    public IDecodedVideo Decode(BenchmarkVideo video) => new Decoded(this, _model.DecodeVideo(video.Path, _sampler, _answerOptions));

    public void Dispose()
    {
        (_sampler as IDisposable)?.Dispose();
        _model.Dispose();
    }

    sealed class Decoded(ModelAnswerer owner, DecodedVideo video) : IDecodedVideo
    {
        public IPreparedVideo Encode() => new Prepared(owner, owner._model.EncodeDecoded(video, owner._answerOptions));

        public void Dispose() => video.Dispose();
    }

    sealed class Prepared(ModelAnswerer owner, VideoFeatures features) : IPreparedVideo
    {
        public IReadOnlyList<string> Answer(IReadOnlyList<string> prompts) =>
            [.. owner._model.AnswerAll(features, prompts, owner._answerOptions).Select(a => a.Text)];

        public void Dispose() => features.Dispose();
    }
}

/// <summary>Another answerer's answers, Python-<c>.strip()</c>-ped as the seed's ScanQA evaluation saves them.</summary>
internal sealed class StrippedAnswers(IVideoAnswerer inner) : IVideoAnswerer
{
    public IDecodedVideo Decode(BenchmarkVideo video) => new Decoded(inner.Decode(video));

    public void Dispose() => inner.Dispose();

    sealed class Decoded(IDecodedVideo inner) : IDecodedVideo
    {
        public IPreparedVideo Encode() => new Prepared(inner.Encode());

        public void Dispose() => inner.Dispose();
    }

    sealed class Prepared(IPreparedVideo inner) : IPreparedVideo
    {
        public IReadOnlyList<string> Answer(IReadOnlyList<string> prompts) => [.. inner.Answer(prompts).Select(PythonText.Strip)];

        public void Dispose() => inner.Dispose();
    }
}

/// <summary>
/// Answers without a model, deterministically from the video key and the question text: an option letter for a
/// multiple-choice prompt, a small number otherwise. For checking data paths, sharding, resume and merging on a
/// machine before spending GPU time; <paramref name="secondsPerAnswer"/> simulates a model's pace (a video's batch of
/// questions takes that long per question).
/// </summary>
internal sealed class DryRunAnswerer(double secondsPerAnswer = 0) : IVideoAnswerer
{
    public IDecodedVideo Decode(BenchmarkVideo video)
    {
        if (video.IsFrameFolder ? !Directory.Exists(video.Path) : !File.Exists(video.Path))
            throw new FileNotFoundException($"Video not found: {video.Path}", video.Path);
        return new Prepared(video.Key, secondsPerAnswer);
    }

    public void Dispose() { }

    /// <summary>Nothing to decode or encode: the same object is both stages.</summary>
    sealed class Prepared(string videoKey, double secondsPerAnswer) : IDecodedVideo, IPreparedVideo
    {
        public IPreparedVideo Encode() => new Prepared(videoKey, secondsPerAnswer);

        public IReadOnlyList<string> Answer(IReadOnlyList<string> prompts)
        {
            if (secondsPerAnswer > 0) Thread.Sleep(TimeSpan.FromSeconds(secondsPerAnswer * prompts.Count));
            return [.. prompts.Select(Answer)];
        }

        string Answer(string prompt)
        {
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
