namespace SpatialMllm.Research.Processing;

/// <summary>
/// qwen-vl-utils' size arithmetic (spec §2.2), in Python's semantics: <c>round</c> is half-to-even,
/// divisions are in double precision, exactly as Python evaluates them.
/// </summary>
internal static class SmartResize
{
    /// <summary>Largest allowed max(H,W)/min(H,W).</summary>
    public const double MaxAspectRatio = 200;

    /// <summary>Height and width, multiples of <paramref name="factor"/>, closest to the input aspect ratio
    /// with min_pixels ≤ H·W ≤ max_pixels (qwen-vl-utils' smart_resize: never below one factor per side).</summary>
    /// <exception cref="ArgumentException">A side is not positive, or the aspect ratio exceeds 200.</exception>
    public static (int Height, int Width) Compute(int height, int width, int factor = 28, double minPixels = 4 * 28 * 28, double maxPixels = 16384 * 28 * 28)
    {
        if (height <= 0 || width <= 0)
            throw new ArgumentException($"Image size {height}×{width} must be positive.");
        double ratio = (double)Math.Max(height, width) / Math.Min(height, width);
        if (ratio > MaxAspectRatio)
            throw new ArgumentException($"Absolute aspect ratio must be smaller than {MaxAspectRatio}, got {ratio} ({height}×{width}).");
        int hBar = Math.Max(factor, RoundByFactor(height, factor));
        int wBar = Math.Max(factor, RoundByFactor(width, factor));
        if ((double)hBar * wBar > maxPixels)
        {
            double beta = Math.Sqrt(height * (double)width / maxPixels);
            hBar = Math.Max(factor, FloorByFactor(height / beta, factor));
            wBar = Math.Max(factor, FloorByFactor(width / beta, factor));
        }
        else if ((double)hBar * wBar < minPixels)
        {
            double beta = Math.Sqrt(minPixels / (height * (double)width));
            hBar = CeilByFactor(height * beta, factor);
            wBar = CeilByFactor(width * beta, factor);
        }
        return (hBar, wBar);
    }

    /// <summary>Python's <c>round(number / factor) * factor</c> (half-to-even).</summary>
    public static int RoundByFactor(double number, int factor) =>
        checked((int)Math.Round(number / factor, MidpointRounding.ToEven) * factor);

    public static int CeilByFactor(double number, int factor) => checked((int)Math.Ceiling(number / factor) * factor);

    public static int FloorByFactor(double number, int factor) => checked((int)Math.Floor(number / factor) * factor);
}

/// <summary>
/// qwen-vl-utils' pixel limits for video frames (spec §2.2). The per-frame maximum shrinks with the
/// frame count so that a whole video stays under <see cref="TotalPixels"/>.
/// </summary>
public sealed record VideoPixelLimits
{
    /// <summary>VIDEO_MIN_PIXELS = 128·28².</summary>
    public int MinPixels { get; init; } = 128 * 28 * 28;

    /// <summary>VIDEO_MAX_PIXELS = 768·28².</summary>
    public int MaxPixels { get; init; } = 768 * 28 * 28;

    /// <summary>VIDEO_TOTAL_PIXELS = int(128000·28²·0.9) = 90,316,800 (qwen-vl-utils 0.0.10+).</summary>
    public double TotalPixels { get; init; } = (long)(128000 * 28 * 28 * 0.9);

    /// <summary>FRAME_FACTOR: frame counts are made even (one temporal patch = 2 frames).</summary>
    public int FrameFactor { get; init; } = 2;

    /// <summary>IMAGE_FACTOR: sides are multiples of 28 (patch 14 × merge 2).</summary>
    public int ImageFactor { get; init; } = 28;

    public static VideoPixelLimits Default { get; } = new();

    /// <summary>max(min(VIDEO_MAX_PIXELS, total/nframes·FRAME_FACTOR), int(min·1.05)): 602,112 for 16 frames.
    /// A double, as in Python, where total/nframes·2 may be fractional.</summary>
    public double MaxPixelsPerFrame(int nframes)
    {
        if (nframes <= 0) throw new ArgumentException($"Frame count must be positive, got {nframes}.");
        return Math.Max(Math.Min(MaxPixels, TotalPixels / nframes * FrameFactor), (int)(MinPixels * 1.05));
    }

    /// <summary>The size fetch_video resizes <paramref name="nframes"/> frames of height×width to.</summary>
    public (int Height, int Width) ResizedSize(int nframes, int height, int width) =>
        SmartResize.Compute(height, width, ImageFactor, MinPixels, MaxPixelsPerFrame(nframes));

    /// <summary>The size for an explicit resized_height/resized_width request (ScanQA uses 480×640): only
    /// rounded to the factor, within the image limits 4·28² .. 16384·28², as fetch_video does.</summary>
    public (int Height, int Width) RequestedSize(int resizedHeight, int resizedWidth) =>
        SmartResize.Compute(resizedHeight, resizedWidth, ImageFactor);
}
