using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Video;

/// <summary>Conversions between packed rgb24 bytes (ffmpeg's layout) and uint8 [T,3,H,W] tensors.</summary>
internal static class RgbFrames
{
    public static Tensor ToTchw(byte[] rgb, int frames, int width, int height)
    {
        using var scope = torch.NewDisposeScope();
        Tensor thwc = torch.tensor(rgb, [frames, height, width, 3]);
        return thwc.permute(0, 3, 1, 2).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>One packed rgb24 buffer per frame of a uint8 [T,3,H,W] tensor.</summary>
    public static List<byte[]> ToPacked(Tensor framesTchw)
    {
        if (framesTchw.dtype != ScalarType.Byte || framesTchw.dim() != 4 || framesTchw.shape[1] != 3)
            throw new ArgumentException($"expected uint8 [T,3,H,W] frames, got {framesTchw.dtype} [{string.Join(",", framesTchw.shape)}]");
        using var scope = torch.NewDisposeScope();
        Tensor thwc = framesTchw.permute(0, 2, 3, 1).contiguous().cpu();
        return Enumerable.Range(0, (int)thwc.shape[0]).Select(t => thwc[t].bytes.ToArray()).ToList();
    }
}
