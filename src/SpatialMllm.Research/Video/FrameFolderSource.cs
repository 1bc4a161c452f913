using System.Buffers.Binary;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Video;

/// <summary>
/// A folder of PNG frames sorted by file name (ordinal, as Python's <c>sorted</c>), e.g. one scene of
/// <c>sa_sampling_16f</c>. All frames must have one size. ffmpeg decodes them, so their pixels match
/// frames decoded from a video by the same decoder; an alpha channel is dropped.
/// </summary>
internal sealed class FrameFolderSource : VideoSource
{
    readonly string[] files;

    FrameFolderSource(VideoInfo info, string[] files) => (Info, this.files) = (info, files);

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

        (int width, int height) = ReadPngSize(files[0]);
        foreach (string file in files.Skip(1))
            if (ReadPngSize(file) is var size && size != (width, height))
                throw new VideoReadException(file, $"is {size.Width}x{size.Height}, but {System.IO.Path.GetFileName(files[0])} is {width}x{height}; all frames of a folder must have one size");

        return new FrameFolderSource(new VideoInfo(fullPath, files.Length, width, height, null, null, 0), files);
    }

    public override Tensor ReadFrames(IReadOnlyList<int> indices)
    {
        CheckIndices(indices);
        int[] unique = indices.Distinct().Order().ToArray();
        byte[] rgb = unique.Length == 0 ? [] : Ffmpeg.DecodePngs(Info.Path, unique.Select(i => files[i]).ToList(), Info.Width, Info.Height);
        return InRequestedOrder(RgbFrames.ToTchw(rgb, unique.Length, Info.Width, Info.Height), unique, indices);
    }

    public override string ComputeContentHash() => Sha256Hex(files.Select<string, Action<System.Security.Cryptography.IncrementalHash>>(file => h =>
    {
        h.AppendData(System.Text.Encoding.UTF8.GetBytes(System.IO.Path.GetFileName(file) + "\n"));
        AppendFile(h, file);
    }));

    /// <summary>Width and height from the PNG signature and IHDR chunk; anything else is not a PNG.</summary>
    static (int Width, int Height) ReadPngSize(string file)
    {
        ReadOnlySpan<byte> signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        Span<byte> head = stackalloc byte[24];
        using (var stream = File.OpenRead(file))
            if (stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length
                || !head[..8].SequenceEqual(signature) || !head[12..16].SequenceEqual("IHDR"u8))
                throw new VideoReadException(file, "is not a PNG file");
        return (BinaryPrimitives.ReadInt32BigEndian(head[16..20]), BinaryPrimitives.ReadInt32BigEndian(head[20..24]));
    }
}
