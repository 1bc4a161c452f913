using static TorchSharp.torch;

namespace SpatialMllm.Research.Video;

/// <summary>A video file decoded by ffmpeg; frames are addressed by decode order (frame number), not timestamp.</summary>
internal sealed class VideoFileSource : VideoSource
{
    VideoFileSource(VideoInfo info) => Info = info;

    public override VideoInfo Info { get; }

    public static new VideoFileSource Open(string path)
    {
        string fullPath = System.IO.Path.GetFullPath(path);
        if (!File.Exists(fullPath)) throw new FileNotFoundException($"{fullPath}: no such video file", fullPath);
        return new VideoFileSource(Ffmpeg.Probe(fullPath));
    }

    public override Tensor ReadFrames(IReadOnlyList<int> indices)
    {
        CheckIndices(indices);
        int[] unique = indices.Distinct().Order().ToArray();
        byte[] rgb = unique.Length == 0 ? [] : Ffmpeg.DecodeFrames(Info.Path, unique, Info.Width, Info.Height);
        return InRequestedOrder(RgbFrames.ToTchw(rgb, unique.Length, Info.Width, Info.Height), unique, indices);
    }

    public override string ComputeContentHash() => Sha256Hex([h => AppendFile(h, Info.Path)]);
}
