using static TorchSharp.torch;

namespace SpatialMllm.Research.Video;

/// <summary>Writes frames as PNG files (ffmpeg's encoder, lossless, at the frames' own size).</summary>
public static class FrameWriter
{
    /// <summary>Writes uint8 frames [T,3,H,W] to <paramref name="paths"/>, one file per frame.</summary>
    public static void WritePngs(Tensor framesTchw, IReadOnlyList<string> paths)
    {
        if (framesTchw.dim() != 4 || framesTchw.shape[0] != paths.Count)
            throw new ArgumentException($"{paths.Count} paths for frames of shape [{string.Join(",", framesTchw.shape)}]");
        Ffmpeg.WritePngs(RgbFrames.ToPacked(framesTchw), (int)framesTchw.shape[3], (int)framesTchw.shape[2], paths);
    }
}
