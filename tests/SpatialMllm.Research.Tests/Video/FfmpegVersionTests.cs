using System.Diagnostics;
using SpatialMllm.Research.Tests.Cli;
using SpatialMllm.Research.Video;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Video;

/// <summary>
/// Issue 16: ffmpeg older than 5.1 rejected <c>-fps_mode</c>, so every video failed, and the PNG-folder path said only
/// "Pipe is broken.". The decoders run here against an old static ffmpeg (4.1, <c>@ffmpeg-installer/linux-x64</c> from
/// npm, ffprobe from <c>@ffprobe-installer/linux-x64</c> — what a GPU machine without ffmpeg gets carried) through
/// <c>SPATIAL_MLLM_FFMPEG</c>/<c>SPATIAL_MLLM_FFPROBE</c> in a CLI process, and must give exactly the frames Debian's
/// ffmpeg gives in this process. The npm packages are installed once into ~/.cache/spatial-mllm/ffmpeg-npm; without npm
/// the tests are skipped, saying so.
/// </summary>
public class FfmpegVersionTests
{
    static readonly Lazy<(string? Ffmpeg, string? Ffprobe, string Why)> StaticFfmpeg = new(InstallStaticFfmpeg);

    static string CacheFolder =>
        Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "spatial-mllm", "ffmpeg-npm");

    /// <summary>npm install of the two packages into the cache folder (kept between runs).</summary>
    static (string?, string?, string) InstallStaticFfmpeg()
    {
        string ffmpeg = Path.Combine(CacheFolder, "node_modules", "@ffmpeg-installer", "linux-x64", "ffmpeg");
        string ffprobe = Path.Combine(CacheFolder, "node_modules", "@ffprobe-installer", "linux-x64", "ffprobe");
        if (!File.Exists(ffmpeg) || !File.Exists(ffprobe))
        {
            Directory.CreateDirectory(CacheFolder);
            var start = new ProcessStartInfo("npm")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = CacheFolder,
            };
            foreach (string a in new[] { "install", "--prefix", CacheFolder, "--no-save", "--no-audit", "--no-fund", "--ignore-scripts",
                         "@ffmpeg-installer/linux-x64@4.1.0", "@ffprobe-installer/linux-x64@5.2.0" })
                start.ArgumentList.Add(a);
            try
            {
                using var npm = Process.Start(start)!;
                var (_, error) = (npm.StandardOutput.ReadToEndAsync(), npm.StandardError.ReadToEndAsync());
                if (!npm.WaitForExit(TimeSpan.FromMinutes(5))) { npm.Kill(); return (null, null, "npm install timed out"); }
                if (npm.ExitCode != 0) return (null, null, "npm install failed (no registry?): " + error.Result);
            }
            catch (System.ComponentModel.Win32Exception) { return (null, null, "npm is not installed"); }
        }
        foreach (string binary in new[] { ffmpeg, ffprobe })
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(binary, File.GetUnixFileMode(binary) | UnixFileMode.UserExecute);
        return (ffmpeg, ffprobe, "");
    }

    static Dictionary<string, string> OldFfmpegEnvironment()
    {
        var (ffmpeg, ffprobe, why) = StaticFfmpeg.Value;
        Assert.SkipWhen(ffmpeg == null, $"no static ffmpeg 4.1 from npm: {why}");
        return new() { [FfmpegTools.FfmpegVariable] = ffmpeg!, [FfmpegTools.FfprobeVariable] = ffprobe! };
    }

    /// <summary>`sample-frames` in a CLI process with the old ffmpeg: probe, decode the selection, write PNGs.</summary>
    static (int Code, string Output, string Error) SampleFramesWithOldFfmpeg(string video, int k, string outDir) =>
        CliProcess.Finish(CliProcess.Start(Path.GetDirectoryName(outDir)!, OldFfmpegEnvironment(),
            "sample-frames", "--video", video, "--sampler", "uniform", "--k", k.ToString(), "--out", outDir));

    /// <summary>The frames written by the old ffmpeg equal the same frames decoded here by Debian's.</summary>
    static void AssertSameFrames(string source, string outDir, int[] indices)
    {
        using var written = VideoSource.Open(outDir).ReadFrames(Enumerable.Range(0, indices.Length).ToArray());
        using var expected = VideoSource.Open(source).ReadFrames(indices);
        Assert.Equal(expected.shape, written.shape);
        Assert.True(expected.eq(written).all().item<bool>(), "the old ffmpeg decoded other pixels");
    }

    [Fact]
    public void The_npm_ffmpeg_is_old_and_rejects_fps_mode()
    {
        var env = OldFfmpegEnvironment();
        var start = new ProcessStartInfo(env[FfmpegTools.FfmpegVariable], "-hide_banner -h long") { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        string help = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.Contains("-vsync", help);
        Assert.DoesNotContain("-fps_mode", help);
    }

    [Fact]
    public void Old_ffmpeg_decodes_a_lossless_video_frame_exactly()
    {
        string dir = TestPaths.NewTempDir("ffmpeg41-video");
        string video = TestVideos.Numbered(dir, "numbered.mkv", frames: 10);
        string outDir = Path.Combine(dir, "out");
        var (code, output, error) = SampleFramesWithOldFfmpeg(video, 4, outDir);
        Assert.True(code == 0, output + error);
        Assert.Contains("[0, 3, 6, 9]", output);
        AssertSameFrames(video, outDir, [0, 3, 6, 9]);
    }

    [Fact]
    public void Old_ffmpeg_decodes_h264_like_debians()
    {
        string dir = TestPaths.NewTempDir("ffmpeg41-h264");
        string video = TestVideos.TestSrc(dir, "scene.mp4", frames: 12, width: 96, height: 72);
        string outDir = Path.Combine(dir, "out");
        var (code, output, error) = SampleFramesWithOldFfmpeg(video, 4, outDir);
        Assert.True(code == 0, output + error);
        AssertSameFrames(video, outDir, [0, 4, 7, 11]);
    }

    [Fact]
    public void Old_ffmpeg_decodes_a_png_frame_folder()
    {
        string dir = TestPaths.NewTempDir("ffmpeg41-pngs");
        string frames = Directory.CreateDirectory(Path.Combine(dir, "frames")).FullName;
        TestVideos.NumberedPngs(frames, frames: 8, pixelFormat: "rgb48be");   // 16-bit: decoded by ffmpeg, not in managed code
        string outDir = Path.Combine(dir, "out");
        var (code, output, error) = SampleFramesWithOldFfmpeg(frames, 4, outDir);
        Assert.True(code == 0, output + error);
        AssertSameFrames(frames, outDir, [0, 2, 5, 7]);
    }

    [Fact]
    public void Old_ffmpeg_errors_carry_its_stderr_and_the_file()
    {
        string dir = TestPaths.NewTempDir("ffmpeg41-error");
        string frames = Directory.CreateDirectory(Path.Combine(dir, "frames")).FullName;
        string[] pngs = TestVideos.NumberedPngs(frames, frames: 4, pixelFormat: "rgb48be");   // 16-bit: ffmpeg decodes it
        CorruptAfterHeader(pngs[2]);
        var (code, _, error) = SampleFramesWithOldFfmpeg(frames, 4, Path.Combine(dir, "out"));
        Assert.Equal(1, code);
        Assert.Contains(frames, error);
        Assert.DoesNotContain("Pipe is broken", error);
        Assert.Contains("ffmpeg", error);
    }

    [Fact]
    public void Png_folder_errors_carry_ffmpegs_own_message_not_a_broken_pipe()
    {
        string frames = TestPaths.NewTempDir("png-error");
        string[] pngs = TestVideos.NumberedPngs(frames, frames: 4, pixelFormat: "rgb48be");   // 16-bit: ffmpeg decodes it
        CorruptAfterHeader(pngs[2]);
        var e = Assert.Throws<VideoReadException>(() => VideoSource.Open(frames).ReadFrames([0, 1, 2, 3]).Dispose());
        Assert.StartsWith(frames, e.Message);
        Assert.DoesNotContain("Pipe is broken", e.Message);
        Assert.Contains("ffmpeg", e.Message);
    }

    /// <summary>Writing a video (a synthetic scene) goes through the configured binary too: on the GPU machine, which has
    /// no ffmpeg on PATH, notebook 03's scene failed with "ffmpeg was not found on your system (tried "ffmpeg")".</summary>
    [Fact]
    public void Old_ffmpeg_writes_a_scene_video_with_no_ffmpeg_on_path()
    {
        var env = OldFfmpegEnvironment();
        env["PATH"] = TestPaths.NewTempDir("no-ffmpeg-on-path");
        string dir = TestPaths.NewTempDir("ffmpeg41-write");
        var (code, output, error) = CliProcess.Finish(CliProcess.Start(dir, env,
            "synthetic", "--out", dir, "--seeds", "3", "--frames", "8", "--width", "96", "--height", "72"));
        Assert.True(code == 0, output + error);
        string video = Path.Combine(dir, "synthetic", "seed0003.mp4");
        Assert.Equal(8, VideoSource.Open(video).Info.FrameCount);
    }

    [Fact]
    public void A_configured_binary_that_does_not_exist_is_named()
    {
        var (code, _, error) = CliProcess.Finish(CliProcess.Start(Path.GetTempPath(),
            new Dictionary<string, string> { [FfmpegTools.FfmpegVariable] = "/nowhere/ffmpeg" },
            "sample-frames", "--video", TestVideos.Numbered(TestPaths.NewTempDir("ffmpeg-missing"), "v.mkv", frames: 4), "--k", "2"));
        Assert.Equal(1, code);
        Assert.Contains("/nowhere/ffmpeg: no such file (from $SPATIAL_MLLM_FFMPEG)", error);
    }

    /// <summary>Keeps the PNG signature and IHDR (so the folder opens) and replaces the image data with noise.</summary>
    static void CorruptAfterHeader(string png)
    {
        byte[] bytes = File.ReadAllBytes(png);
        new Random(1).NextBytes(bytes.AsSpan(40));
        File.WriteAllBytes(png, bytes);
    }
}
