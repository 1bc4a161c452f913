using System.Diagnostics;

namespace SpatialMllm.Research.Tests.Video;

/// <summary>
/// Videos made with the ffmpeg CLI for the tests. The lossless ones encode the frame number n in the red
/// channel (4·n, so up to 63 frames) and the pixel position in green (4·x) and blue (4·y), so a decoded frame says which
/// frame it is, exactly.
/// </summary>
internal static class TestVideos
{
    /// <summary>A lossless video whose frame n has red = 4n; rate is the nominal frame rate.</summary>
    public static string Numbered(string dir, string name, int frames, int width = 64, int height = 48, int rate = 10) =>
        Ffmpeg(dir, name, $"-f lavfi -i nullsrc=s={width}x{height}:r={rate},geq=r=N*4:g=X*4:b=Y*4 -frames:v {frames} -c:v ffv1 -pix_fmt bgr0");

    /// <summary>Variable frame rate: frames 0–9 at 10 fps, then 30 fps (timestamps say nothing about the index).</summary>
    public static string VariableFrameRate(string dir, string name, int frames) =>
        Ffmpeg(dir, name,
            $"-f lavfi -i nullsrc=s=64x48:r=10,geq=r=N*4:g=X*4:b=Y*4,settb=1/1000,setpts='if(lt(N,10),N/10,1+(N-10)/30)/TB' " +
            $"-frames:v {frames} -fps_mode passthrough -c:v ffv1 -pix_fmt bgr0");

    /// <summary>An H.264 testsrc video (what most real videos are).</summary>
    public static string TestSrc(string dir, string name, int frames, int width = 320, int height = 240, string extra = "") =>
        Ffmpeg(dir, name, $"-f lavfi -i testsrc=s={width}x{height}:r=10 -frames:v {frames} -c:v libx264 -pix_fmt yuv420p {extra}");

    /// <summary>A copy of <paramref name="source"/> with the rotation metadata set (display rotated by <paramref name="degrees"/>).</summary>
    public static string Rotated(string dir, string name, string source, int degrees) =>
        Ffmpeg(dir, name, $"-i {source} -c copy -metadata:s:v:0 rotate={degrees}");

    /// <summary>The first <paramref name="fraction"/> of the file's bytes.</summary>
    public static string Truncated(string dir, string name, string source, double fraction)
    {
        byte[] bytes = File.ReadAllBytes(source);
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes[..(int)(bytes.Length * fraction)]);
        return path;
    }

    /// <summary>Writes PNG frames with ffmpeg; frame i is the numbered pattern's frame i. 8-bit RGB frames are decoded in
    /// managed code; <paramref name="pixelFormat"/> "rgb48be" (16-bit) makes frames that go through ffmpeg's decoder.</summary>
    public static string[] NumberedPngs(string dir, int frames, int width = 64, int height = 48, string prefix = "frame_", string pixelFormat = "rgb24")
    {
        Ffmpeg(dir, $"{prefix}%04d.png", $"-f lavfi -i nullsrc=s={width}x{height}:r=10,geq=r=N*4:g=X*4:b=Y*4 -frames:v {frames} -pix_fmt {pixelFormat} -start_number 0");
        return Enumerable.Range(0, frames).Select(i => Path.Combine(dir, $"{prefix}{i:D4}.png")).ToArray();
    }

    /// <summary>Runs ffmpeg with <paramref name="arguments"/> writing <paramref name="name"/> in <paramref name="dir"/>.</summary>
    public static string Ffmpeg(string dir, string name, string arguments)
    {
        string output = Path.Combine(dir, name);
        var start = new ProcessStartInfo("ffmpeg", $"-v error -y {arguments} {output}")
        {
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = dir,
        };
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException("These tests need ffmpeg on PATH: apt-get update && apt-get install -y ffmpeg", ex);
        }
        using (process)
        {
            string errors = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0) throw new InvalidOperationException($"ffmpeg {start.Arguments} failed: {errors}");
        }
        return output;
    }
}
