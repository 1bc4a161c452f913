using static TorchSharp.torch;

namespace SpatialMllm.Research.Video;

/// <summary>
/// A folder of PNG frames sorted by file name (ordinal, as Python's <c>sorted</c>), e.g. one scene of
/// <c>sa_sampling_16f</c>. All frames must have one size; an alpha channel is dropped. 8-bit RGB/RGBA non-interlaced
/// frames (what ffmpeg and <see cref="Png.EncodeRgb"/> write) are decoded in managed code, so such a folder needs no
/// ffmpeg; other kinds (16-bit, palette, grey, interlaced) go through ffmpeg's PNG decoder. PNG is lossless: both give
/// the same pixels.
/// </summary>
internal sealed class FrameFolderSource : VideoSource
{
    readonly string[] files;
    readonly bool[] managed;

    FrameFolderSource(VideoInfo info, string[] files, bool[] managed) => (Info, this.files, this.managed) = (info, files, managed);

    public override VideoInfo Info { get; }

    public IReadOnlyList<string> Files => files;

    public static new FrameFolderSource Open(string folder)
    {
        string fullPath = System.IO.Path.GetFullPath(folder);
        if (!Directory.Exists(fullPath)) throw new DirectoryNotFoundException($"{fullPath}: no such frame folder");
        string[] files = Directory
            .EnumerateFiles(fullPath, "*.png", new EnumerationOptions { MatchCasing = MatchCasing.CaseSensitive })
            .Order(StringComparer.Ordinal)
            .ToArray();
        if (files.Length == 0) throw new VideoReadException(fullPath, "frame folder holds no *.png files");

        Png.Header[] headers = [.. files.Select(Png.ReadHeader)];
        (int width, int height) = (headers[0].Width, headers[0].Height);
        for (int i = 1; i < files.Length; i++)
            if (headers[i] is var h && (h.Width, h.Height) != (width, height))
                throw new VideoReadException(files[i], $"is {h.Width}x{h.Height}, but {System.IO.Path.GetFileName(files[0])} is {width}x{height}; all frames of a folder must have one size");

        return new FrameFolderSource(new VideoInfo(fullPath, files.Length, width, height, null, null, 0), files, [.. headers.Select(h => h.IsManagedDecodable)]);
    }

    public override Tensor ReadFrames(IReadOnlyList<int> indices)
    {
        CheckIndices(indices);
        int[] unique = indices.Distinct().Order().ToArray();
        int frameBytes = Info.Width * Info.Height * 3;
        byte[] rgb = new byte[unique.Length * frameBytes];
        int[] viaFfmpeg = [.. Enumerable.Range(0, unique.Length).Where(k => !managed[unique[k]])];
        for (int k = 0; k < unique.Length; k++)
            if (managed[unique[k]]) Png.DecodeRgb(files[unique[k]], rgb.AsSpan(k * frameBytes, frameBytes));
        if (viaFfmpeg.Length > 0)
        {
            byte[] decoded = Ffmpeg.DecodePngs(Info.Path, [.. viaFfmpeg.Select(k => files[unique[k]])], Info.Width, Info.Height);
            for (int j = 0; j < viaFfmpeg.Length; j++) decoded.AsSpan(j * frameBytes, frameBytes).CopyTo(rgb.AsSpan(viaFfmpeg[j] * frameBytes));
        }
        return InRequestedOrder(RgbFrames.ToTchw(rgb, unique.Length, Info.Width, Info.Height), unique, indices);
    }

    public override string ComputeContentHash() => Sha256Hex(files.Select<string, Action<System.Security.Cryptography.IncrementalHash>>(file => h =>
    {
        h.AppendData(System.Text.Encoding.UTF8.GetBytes(System.IO.Path.GetFileName(file) + "\n"));
        AppendFile(h, file);
    }));
}
