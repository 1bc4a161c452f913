using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Processing;

/// <summary>What the two encoders receive for one video.</summary>
/// <param name="PixelValuesVideos">Qwen patches, float32 [grid_t·grid_h·grid_w, C·2·14·14], merge-ordered.</param>
/// <param name="Grid">video_grid_thw.</param>
/// <param name="SecondPerGridT">Seconds per temporal patch: temporal_patch_size / fps (1.0 at the default 2 fps).</param>
/// <param name="VideoTchw">VGGT's input: the resized frames / 255, float32 [2·grid_t, 3, H, W] in [0,1]
/// (an odd frame count padded like the patches, so that frames 2t and 2t+1 fold into one token).</param>
public sealed record QwenVideoInputs(Tensor PixelValuesVideos, GridThw Grid, double SecondPerGridT, Tensor VideoTchw) : IDisposable
{
    public void Dispose()
    {
        PixelValuesVideos.Dispose();
        VideoTchw.Dispose();
    }
}

/// <summary>
/// Qwen2.5-VL's video input pipeline: qwen-vl-utils' fetch_video resize (smart_resize under the video
/// pixel limits, torchvision bicubic with antialias on uint8) followed by Hugging Face's
/// Qwen2VLImageProcessor (rescale 1/255, CLIP mean/std, temporal patch 2, 14-px patches in merge order).
/// </summary>
public sealed class QwenVideoProcessor
{
    public QwenVideoProcessor(QwenImageProcessorConfig? config = null, VideoPixelLimits? limits = null)
    {
        Config = config ?? new QwenImageProcessorConfig();
        Config.Validate();
        Limits = limits ?? VideoPixelLimits.Default;
    }

    public QwenImageProcessorConfig Config { get; }
    public VideoPixelLimits Limits { get; }

    /// <summary>A processor configured by a model folder's preprocessor_config.json.</summary>
    public static QwenVideoProcessor FromFolder(string modelFolder, VideoPixelLimits? limits = null) =>
        new(QwenImageProcessorConfig.FromFile(Path.Combine(modelFolder, "preprocessor_config.json")), limits);

    /// <summary>
    /// The whole pipeline on decoded frames: resize as fetch_video does, then <see cref="ProcessResized"/>.
    /// </summary>
    /// <param name="framesTchw">uint8 [T, 3, H, W], the frames already selected (e.g. 16).</param>
    /// <param name="fps">The fps passed to the HF processor (Spatial-MLLM passes none: 2.0).</param>
    /// <param name="resizedSize">An explicit resized_height/resized_width (ScanQA: 480×640), else from the video limits.</param>
    public QwenVideoInputs Process(Tensor framesTchw, double fps = VideoFrameSampling.DefaultFps, (int Height, int Width)? resizedSize = null)
    {
        CheckFrames(framesTchw);
        int t = (int)framesTchw.shape[0], h = (int)framesTchw.shape[2], w = (int)framesTchw.shape[3];
        var size = resizedSize is { } r ? Limits.RequestedSize(r.Height, r.Width) : Limits.ResizedSize(t, h, w);
        using var resized = ResizeFrames(framesTchw, size.Height, size.Width);
        return ProcessResized(resized, fps);
    }

    /// <summary><see cref="Process(Tensor, double, ValueTuple{int, int}?)"/> on a list of frames [3, H, W],
    /// which must all have one size.</summary>
    public QwenVideoInputs Process(IReadOnlyList<Tensor> frames, double fps = VideoFrameSampling.DefaultFps, (int Height, int Width)? resizedSize = null)
    {
        using var stacked = StackFrames(frames);
        return Process(stacked, fps, resizedSize);
    }

    /// <summary>
    /// torchvision's resize(video, [height, width], BICUBIC, antialias=True) on uint8 frames: interpolate in
    /// float32, clamp to [0, 255], round half-to-even, back to uint8. Returns uint8 [T, 3, height, width].
    /// </summary>
    public static Tensor ResizeFrames(Tensor framesTchw, int height, int width)
    {
        CheckFrames(framesTchw);
        if (framesTchw.shape[2] == height && framesTchw.shape[3] == width) return framesTchw.clone();
        using var scope = NewDisposeScope();
        var resized = nn.functional.interpolate(framesTchw.to(ScalarType.Float32), size: [height, width],
            mode: InterpolationMode.Bicubic, align_corners: false, antialias: true);
        return resized.clamp(0, 255).round().to(ScalarType.Byte).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Hugging Face's Qwen2VLImageProcessor on frames that already have their final size (each side a
    /// multiple of 28, pixels within the config's min/max, where its own smart_resize keeps the size).
    /// </summary>
    /// <param name="framesTchw">uint8 [T, 3, H, W].</param>
    /// <exception cref="NotSupportedException">The HF processor would resize these frames (with PIL); use
    /// <see cref="Process(Tensor, double, ValueTuple{int, int}?)"/> to resize them first.</exception>
    public QwenVideoInputs ProcessResized(Tensor framesTchw, double fps = VideoFrameSampling.DefaultFps)
    {
        CheckFrames(framesTchw);
        if (fps <= 0) throw new ArgumentException($"fps must be positive, got {fps}.", nameof(fps));
        int frames = (int)framesTchw.shape[0], channels = (int)framesTchw.shape[1];
        int height = (int)framesTchw.shape[2], width = (int)framesTchw.shape[3];
        int factor = Config.Factor;
        long pixels = (long)height * width;
        if (height % factor != 0 || width % factor != 0 || pixels < Config.MinPixels || pixels > Config.MaxPixels)
            throw new NotSupportedException(
                $"Frames of {height}×{width} would be resized again by the image processor (sides must be multiples of {factor}, " +
                $"pixels within [{Config.MinPixels}, {Config.MaxPixels}]); resize them with Process first.");

        int tps = Config.TemporalPatchSize, ps = Config.PatchSize, m = Config.MergeSize;
        var grid = new GridThw((frames + tps - 1) / tps, height / ps, width / ps);

        using var scope = NewDisposeScope();
        var padded = PadToTemporalPatch(framesTchw, tps);
        var videoTchw = padded.to(ScalarType.Float32).div(255.0f);

        // As HF: rescale in float64 then store float32; normalise in float32 with float32 mean/std.
        var x = padded.to(ScalarType.Float64);
        x = Config.DoRescale ? x.mul(Config.RescaleFactor).to(ScalarType.Float32) : x.to(ScalarType.Float32);
        if (Config.DoNormalize)
        {
            var mean = tensor(Config.ImageMean.Select(v => (float)v).ToArray()).view(1, 3, 1, 1);
            var std = tensor(Config.ImageStd.Select(v => (float)v).ToArray()).view(1, 3, 1, 1);
            x = x.sub(mean).div(std);
        }

        // [grid_t·tps, C, H, W] → [gt, tps, C, gh/m, m, ps, gw/m, m, ps]
        //   → [gt, gh/m, gw/m, m(row), m(col), C, tps, ps, ps] → rows in merge order, each (C, t, y, x).
        var patches = x.reshape(grid.T, tps, channels, grid.H / m, m, ps, grid.W / m, m, ps)
            .permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
            .reshape(grid.PatchCount, channels * tps * ps * ps)
            .contiguous();

        return new QwenVideoInputs(patches.MoveToOuterDisposeScope(), grid, tps / fps, videoTchw.MoveToOuterDisposeScope());
    }

    /// <summary>Appends copies of the last frame up to a multiple of the temporal patch size, as the reference does.</summary>
    static Tensor PadToTemporalPatch(Tensor frames, int temporalPatchSize)
    {
        long t = frames.shape[0];
        long missing = (temporalPatchSize - t % temporalPatchSize) % temporalPatchSize;
        if (missing == 0) return frames.alias();
        var last = frames[TensorIndex.Slice(t - 1, t)].expand(missing, -1, -1, -1);
        return cat([frames, last], 0);
    }

    static Tensor StackFrames(IReadOnlyList<Tensor> frames)
    {
        if (frames is null || frames.Count == 0) throw new ArgumentException("The video has no frames.", nameof(frames));
        foreach (var f in frames)
            if (f.ndim != 3) throw new ArgumentException($"Each frame must be [3, H, W], got [{string.Join(", ", f.shape)}].", nameof(frames));
        var sizes = frames.Select(f => (H: f.shape[1], W: f.shape[2])).Distinct().ToList();
        if (sizes.Count > 1)
            throw new ArgumentException(
                $"All frames of a video must have one size; got {string.Join(", ", sizes.Select(s => $"{s.H}×{s.W}"))}.", nameof(frames));
        return stack(frames, 0);
    }

    static void CheckFrames(Tensor frames)
    {
        ArgumentNullException.ThrowIfNull(frames);
        if (frames.ndim != 4 || frames.shape[1] != 3)
            throw new ArgumentException($"Frames must be [T, 3, H, W], got [{string.Join(", ", frames.shape)}].", nameof(frames));
        if (frames.dtype != ScalarType.Byte)
            throw new ArgumentException($"Frames must be uint8 (0..255), got {frames.dtype}.", nameof(frames));
        if (frames.shape[0] == 0)
            throw new ArgumentException("The video has no frames.", nameof(frames));
        if (frames.shape[2] == 0 || frames.shape[3] == 0)
            throw new ArgumentException($"Frames of size {frames.shape[2]}×{frames.shape[3]} are empty.", nameof(frames));
    }
}
