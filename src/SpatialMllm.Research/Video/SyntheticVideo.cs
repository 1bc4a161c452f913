using FFMpegCore;

namespace SpatialMllm.Research.Video;

/// <summary>A short test-pattern video made with ffmpeg (the demo's default input).</summary>
internal static class SyntheticVideo
{
    /// <summary>ffmpeg's moving <c>testsrc2</c> pattern, H.264, <paramref name="seconds"/> at 8 fps.</summary>
    public static string Create(string path, int width = 320, int height = 240, int seconds = 4)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        FFMpegArguments
            .FromFileInput($"testsrc2=size={width}x{height}:rate=8", verifyExists: false, o => o.ForceFormat("lavfi"))
            .OutputToFile(path, overwrite: true, o => o.WithDuration(TimeSpan.FromSeconds(seconds)).WithVideoCodec("libx264").WithPixelFormat("yuv420p"))
            .ProcessSynchronously(throwOnError: false, FfmpegTools.FfmpegOptions);
        if (!File.Exists(path) || new FileInfo(path).Length == 0) throw new VideoReadException(path, "ffmpeg could not make the synthetic video (is ffmpeg installed? environment/prerequisites.sh installs it)");
        return path;
    }
}
