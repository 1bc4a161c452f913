using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// The frame samplers, for notebooks and the CLI:
/// <code>
/// var video = VideoSource.Open("scene.mp4");
/// FrameSelection uniform = FrameSampler.Uniform(16).Select(video);
/// FrameSelection keyframes = FrameSampler.Keyframes(16).Select(video);
/// using var spaceAware = FrameSampler.SpaceAware(16, modelDir: "checkpoints/Spatial-MLLM");
/// FrameSelection sa = spaceAware.WithCache("cache/sampling").Select(video);
/// </code>
/// </summary>
public static class FrameSampler
{
    /// <summary>Qwen2.5-VL's uniform rule: n rounded to even, round(linspace(0, N−1, n)).</summary>
    public static IFrameSampler Uniform(int frames) => new UniformSampler(frames);

    /// <summary>
    /// Space-aware sampling with the VGGT of <paramref name="modelDir"/> (loaded on first use, on <paramref name="device"/>;
    /// null: CUDA when visible). VGGT sees the candidates resized to <paramref name="inputWidth"/> (VGGT-1B's 518 as
    /// the paper's sampler; a VGGT trained on smaller frames, e.g. rooms-tiny's 112, at its training width). Dispose the
    /// sampler to release the model.
    /// </summary>
    public static SpaceAwareSampler SpaceAware(int k, string modelDir, int candidates = 128, TorchSharp.torch.Device? device = null,
        int inputWidth = VggtSamplingPreprocessor.TargetSize)
    {
        VggtSamplingPreprocessor.CheckTargetWidth(inputWidth);
        string fullPath = Path.GetFullPath(modelDir);
        // The width is part of the sampler's settings (and so of the cache key) when it is not the paper's.
        string id = inputWidth == VggtSamplingPreprocessor.TargetSize ? fullPath : $"{fullPath},width={inputWidth}";
        return new SpaceAwareSampler(k, candidates, () => PointMapPredictors.FromModelFolder(fullPath, device, inputWidth), id, ownsPredictor: true);
    }

    /// <summary>Space-aware sampling with a given point-map predictor; <paramref name="predictorId"/> names it in the settings and cache key.</summary>
    internal static SpaceAwareSampler SpaceAware(int k, IPointMapPredictor predictor, string predictorId, int candidates = 128) =>
        new(k, candidates, () => predictor, predictorId, ownsPredictor: false);

    /// <summary>Visual keyframes: greedy farthest-point selection on 32×32 thumbnails (see <see cref="KeyframeSampler"/>).</summary>
    public static IFrameSampler Keyframes(int k, int candidates = 128) => new KeyframeSampler(k, candidates);

    /// <summary>
    /// A sampler from a function of the video (e.g. in a notebook cell):
    /// <c>FrameSampler.FromFunction("first-half(8)", v => Enumerable.Range(0, 8).Select(i => i * v.Info.FrameCount / 16))</c>.
    /// <paramref name="settings"/> names it (and keys the selection cache), so include every setting that changes the result.
    /// </summary>
    public static IFrameSampler FromFunction(string settings, Func<VideoSource, IEnumerable<int>> choose) => new FunctionSampler(settings, choose);

    sealed class FunctionSampler(string settings, Func<VideoSource, IEnumerable<int>> choose) : IFrameSampler
    {
        public string Settings => settings;
        public FrameSelection Select(VideoSource video) => FrameSelection.Of(settings, video.Info.FrameCount, choose(video));
    }

    /// <summary>The same sampler, with results kept as JSON under <paramref name="cacheDir"/> (see <see cref="SelectionCache"/>).</summary>
    public static IFrameSampler WithCache(this IFrameSampler sampler, string cacheDir) =>
        new CachedFrameSampler(sampler, new SelectionCache(cacheDir));
}
