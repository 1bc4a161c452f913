using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Video;

/// <summary>
/// A video file or a folder of frames (<c>&lt;scene&gt;/*.png</c>, sorted by name: the pre-sampled
/// <c>sa_sampling_16f</c> layout). Frames come at native size as RGB uint8 [T,3,H,W]; resizing to the
/// model's resolution is the processor's job.
/// </summary>
public abstract class VideoSource
{
    public abstract VideoInfo Info { get; }

    /// <summary>
    /// Decodes the frames at <paramref name="indices"/> (0-based frame numbers, any order, repeats
    /// allowed) into a uint8 tensor [indices.Count, 3, H, W] in the order asked for.
    /// </summary>
    public abstract Tensor ReadFrames(IReadOnlyList<int> indices);

    /// <summary>SHA-256 (hex) of the content: the file's bytes, or the folder's frame names and bytes.</summary>
    public abstract string ComputeContentHash();

    /// <summary>Opens a frame folder if <paramref name="path"/> is a directory, else a video file.</summary>
    public static VideoSource Open(string path) =>
        Directory.Exists(path) ? FrameFolderSource.Open(path) : VideoFileSource.Open(path);

    protected void CheckIndices(IReadOnlyList<int> indices)
    {
        foreach (int i in indices)
            if (i < 0 || i >= Info.FrameCount)
                throw new ArgumentOutOfRangeException(nameof(indices),
                    $"{Info.Path}: frame index {i} is outside 0..{Info.FrameCount - 1}");
    }

    /// <summary>Puts frames decoded in ascending unique order back into the order asked for.</summary>
    protected static Tensor InRequestedOrder(Tensor uniqueFramesInOrder, int[] uniqueSorted, IReadOnlyList<int> indices)
    {
        if (uniqueSorted.Length == indices.Count && uniqueSorted.SequenceEqual(indices)) return uniqueFramesInOrder;
        long[] positions = indices.Select(i => (long)Array.BinarySearch(uniqueSorted, i)).ToArray();
        using var scope = torch.NewDisposeScope();
        return uniqueFramesInOrder.index_select(0, torch.tensor(positions)).MoveToOuterDisposeScope();
    }

    protected static string Sha256Hex(IEnumerable<Action<IncrementalHash>> parts)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var part in parts) part(hash);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    protected static void AppendFile(IncrementalHash hash, string path)
    {
        using var stream = File.OpenRead(path);
        byte[] buffer = new byte[1 << 20];
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0) hash.AppendData(buffer, 0, read);
    }
}
