using System.Net;
using System.Text;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Display;

/// <summary>A row of video frames with captions, as inline PNG images (the notebook file stays self-contained).</summary>
public static class FrameStrip
{
    /// <summary>
    /// Frames <c>[T, C, H, W]</c> (or one frame <c>[C, H, W]</c>) with C = 3 (RGB) or 1 (grey): uint8 0–255, or
    /// floating point 0–1 (clamped). Frames taller than <paramref name="height"/> pixels are scaled down before
    /// encoding so that a 16-frame strip stays small in the saved notebook. Captions default to "frame i".
    /// </summary>
    public static HtmlView FromTensor(Tensor frames, IReadOnlyList<string>? captions = null, int height = 128)
    {
        long[] shape = frames.dim() == 3 ? [1, .. frames.shape] : frames.shape;
        if (shape.Length != 4 || (shape[1] != 3 && shape[1] != 1))
            throw new ArgumentException($"Expected frames [T, 3|1, H, W] or [3|1, H, W], got [{string.Join(", ", frames.shape)}].");
        if (height <= 0) throw new ArgumentOutOfRangeException(nameof(height), "The display height must be positive.");

        int count = (int)shape[0];
        CheckCaptions(captions, count);
        var images = new List<(string DataUri, string Caption)>(count);
        using (NewDisposeScope())
        {
            var rgb = ToDisplayRgb(frames.reshape(shape), height);
            int h = (int)rgb.shape[1], w = (int)rgb.shape[2];
            for (int t = 0; t < count; t++)
            {
                byte[] pixels = rgb[t].data<byte>().ToArray();
                images.Add((PngDataUri(Png.EncodeRgb(pixels, w, h)), captions?[t] ?? $"frame {t}"));
            }
        }
        return new HtmlView(Row(images, height));
    }

    /// <summary>PNG files shown as they are (scaled by the browser to <paramref name="height"/> pixels).</summary>
    public static HtmlView FromPngFiles(IReadOnlyList<string> paths, IReadOnlyList<string>? captions = null, int height = 128)
    {
        CheckCaptions(captions, paths.Count);
        var images = paths.Select((path, i) =>
            (PngDataUri(File.ReadAllBytes(path)), captions?[i] ?? Path.GetFileName(path))).ToList();
        return new HtmlView(Row(images, height));
    }

    /// <summary>[T, H', W', 3] uint8 on the CPU, at most <paramref name="height"/> rows high.</summary>
    static Tensor ToDisplayRgb(Tensor frames, int height)
    {
        var x = frames.detach().cpu();
        bool scale = x.shape[2] > height;
        if (x.dtype != ScalarType.Byte || scale)
        {
            x = x.dtype == ScalarType.Byte ? x.to(ScalarType.Float32).div(255) : x.to(ScalarType.Float32).clamp(0, 1);
            if (scale)
            {
                long width = Math.Max(1, (long)Math.Round((double)x.shape[3] * height / x.shape[2]));
                x = nn.functional.interpolate(x, [height, width], mode: InterpolationMode.Bilinear,
                    align_corners: false, antialias: true).clamp(0, 1);
            }
            x = x.mul(255).round().to(ScalarType.Byte);
        }
        if (x.shape[1] == 1) x = x.expand(-1, 3, -1, -1);
        return x.permute(0, 2, 3, 1).contiguous();
    }

    static string PngDataUri(byte[] png) => "data:image/png;base64," + Convert.ToBase64String(png);

    static void CheckCaptions(IReadOnlyList<string>? captions, int count)
    {
        if (captions != null && captions.Count != count)
            throw new ArgumentException($"{captions.Count} captions for {count} frames.");
    }

    static string Row(IEnumerable<(string DataUri, string Caption)> images, int height)
    {
        var html = new StringBuilder("<div style=\"display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start\">");
        foreach (var (uri, caption) in images)
            html.Append("<figure style=\"margin:0;text-align:center\">")
                .Append($"<img src=\"{uri}\" style=\"height:{height}px;image-rendering:auto\"/>")
                .Append($"<figcaption style=\"font-size:11px;font-family:monospace\">{WebUtility.HtmlEncode(caption)}</figcaption>")
                .Append("</figure>");
        return html.Append("</div>").ToString();
    }
}
