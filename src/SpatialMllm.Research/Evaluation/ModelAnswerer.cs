using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Sampling;

namespace SpatialMllm.Research.Evaluation;

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

    /// <summary>Loads the checkpoint in <paramref name="modelDir"/> on <paramref name="device"/> ("cpu", "cuda:0", …), with
    /// the LoRA adapter in <paramref name="adapterDir"/> when given: the single seam where the real model is plugged into
    /// evaluation.</summary>
    public static ModelAnswerer Load(string modelDir, string device, AnswererOptions options, string? adapterDir = null)
    {
        var model = SpatialMllmModel.Load(modelDir, TorchRuntime.ParseDevice(device));
        try
        {
            if (adapterDir != null) LoraModel.Load(model, adapterDir);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return new(model, modelDir, options);
    }

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
