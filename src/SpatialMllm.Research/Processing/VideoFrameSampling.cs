using static TorchSharp.torch;

namespace SpatialMllm.Research.Processing;

/// <summary>qwen-vl-utils' choice of how many frames to read and which (smart_nframes; spec §2.1).</summary>
public static class VideoFrameSampling
{
    public const int FrameFactor = 2;
    public const double DefaultFps = 2.0;
    public const int FpsMinFrames = 4;
    public const int FpsMaxFrames = 768;

    /// <summary>nframes for an explicit request: round(requested/2)·2 (half-to-even), within [2, totalFrames].</summary>
    /// <exception cref="ArgumentException">The rounded count is outside [2, totalFrames].</exception>
    public static int ForCount(int requested, int totalFrames) =>
        Check(SmartResize.RoundByFactor(requested, FrameFactor), totalFrames);

    /// <summary>nframes for sampling at <paramref name="fps"/>: totalFrames/videoFps·fps, clamped to
    /// [ceil2(minFrames), min(floor2(maxFrames), totalFrames)], then floored to even.</summary>
    public static int ForFps(int totalFrames, double videoFps, double fps = DefaultFps, int minFrames = FpsMinFrames, int? maxFrames = null)
    {
        if (videoFps <= 0) throw new ArgumentException($"Video fps must be positive, got {videoFps}.");
        int min = SmartResize.CeilByFactor(minFrames, FrameFactor);
        int max = SmartResize.FloorByFactor(maxFrames ?? Math.Min(FpsMaxFrames, totalFrames), FrameFactor);
        double n = totalFrames / videoFps * fps;
        n = Math.Min(Math.Min(Math.Max(n, min), max), totalFrames);
        return Check(SmartResize.FloorByFactor(n, FrameFactor), totalFrames);
    }

    /// <summary>Frame indices torch.linspace(first, last, nframes).round(): uniform, both ends included,
    /// float32 linspace and half-to-even rounding as in the reference (computed by libtorch itself).</summary>
    public static long[] Indices(int firstFrame, int lastFrame, int nframes)
    {
        using var scope = NewDisposeScope();
        return linspace(firstFrame, lastFrame, nframes, dtype: ScalarType.Float32).round().to(ScalarType.Int64).data<long>().ToArray();
    }

    static int Check(int nframes, int totalFrames) =>
        nframes >= FrameFactor && nframes <= totalFrames
            ? nframes
            : throw new ArgumentException($"nframes should be in [{FrameFactor}, {totalFrames}], got {nframes}.");
}
