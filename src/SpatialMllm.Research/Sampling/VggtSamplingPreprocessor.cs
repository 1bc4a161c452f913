using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// VGGT's <c>load_and_preprocess_images</c> in "crop" mode as <c>sa_sampling.py</c> uses it (spec §4 step 2):
/// portrait frames rotated −90° (clockwise), bicubic resize to width 518 and height round(h·518/w/14)·14,
/// values in [0,1], mixed sizes padded with 1.0 (centred). The reference also centre-crops heights above
/// 518, which cannot happen here: after the rotation h ≤ w, so the resized height is at most 518.
/// This preprocessing only feeds the sampler's VGGT pass; the selected frames go on at native size. A VGGT trained at
/// another size (a small one trained on small frames) takes another target width, a multiple of the 14-pixel patch.
/// </summary>
public static class VggtSamplingPreprocessor
{
    public const int TargetSize = 518;
    const int Patch = 14;

    /// <summary>Preprocesses uint8 frames [T,3,H,W] (one size) to <paramref name="targetWidth"/>.</summary>
    public static Tensor Preprocess(Tensor framesTchw, int targetWidth = TargetSize) =>
        Preprocess(Enumerable.Range(0, (int)framesTchw.shape[0]).Select(t => framesTchw[t]).ToList(), targetWidth);

    /// <summary>Preprocesses uint8 frames [3,H,W], possibly of different sizes, into float [S,3,H',W'] in [0,1].</summary>
    public static Tensor Preprocess(IReadOnlyList<Tensor> framesChw, int targetWidth = TargetSize)
    {
        if (framesChw.Count == 0) throw new ArgumentException("no frames to preprocess", nameof(framesChw));
        CheckTargetWidth(targetWidth);
        using var scope = torch.NewDisposeScope();
        List<Tensor> resized = framesChw.Select(f => ResizeOne(f, targetWidth)).ToList();
        long maxHeight = resized.Max(f => f.shape[1]);
        long maxWidth = resized.Max(f => f.shape[2]);
        Tensor batch = torch.stack(resized.Select(f => PadCentred(f, maxHeight, maxWidth)));
        return batch.MoveToOuterDisposeScope();
    }

    /// <summary>The resized height of a (rotated, so landscape or square) frame of <paramref name="width"/>×<paramref name="height"/>.</summary>
    public static int ResizedHeight(int width, int height, int targetWidth = TargetSize) =>
        (int)Math.Round(height * ((double)targetWidth / width) / Patch, MidpointRounding.ToEven) * Patch;

    /// <summary>Throws unless <paramref name="targetWidth"/> is a positive multiple of VGGT's 14-pixel patch.</summary>
    public static void CheckTargetWidth(int targetWidth)
    {
        if (targetWidth < Patch || targetWidth % Patch != 0)
            throw new ArgumentOutOfRangeException(nameof(targetWidth), $"VGGT's input width must be a positive multiple of its {Patch}-pixel patch, not {targetWidth}");
    }

    static Tensor ResizeOne(Tensor frame, int targetWidth)
    {
        if (frame.dtype != ScalarType.Byte || frame.dim() != 3 || frame.shape[0] != 3)
            throw new ArgumentException($"expected a uint8 [3,H,W] frame, got {frame.dtype} [{string.Join(",", frame.shape)}]");
        Tensor image = frame.to(float32);
        // PIL's rotate(-90, expand=True) turns the image clockwise; rot90 with k = −1 over (H, W) does the same.
        if (image.shape[1] > image.shape[2]) image = image.rot90(-1, (1, 2));
        int height = (int)image.shape[1], width = (int)image.shape[2];
        int newHeight = ResizedHeight(width, height, targetWidth);
        // PIL resizes the 8-bit image with an antialiased bicubic (a = −0.5), which is torch's antialias path;
        // rounding back to 8 bits keeps the values PIL would hand to ToTensor (up to its fixed-point rounding).
        return torch.nn.functional.interpolate(image.unsqueeze(0), size: [newHeight, targetWidth],
                mode: InterpolationMode.Bicubic, align_corners: false, antialias: true)
            .squeeze(0).round().clamp(0, 255).div(255);
    }

    static Tensor PadCentred(Tensor image, long height, long width)
    {
        long padHeight = height - image.shape[1], padWidth = width - image.shape[2];
        if (padHeight == 0 && padWidth == 0) return image;
        long top = padHeight / 2, left = padWidth / 2;
        return torch.nn.functional.pad(image, [left, padWidth - left, top, padHeight - top], PaddingModes.Constant, 1.0);
    }
}
