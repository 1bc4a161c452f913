using SpatialMllm.Research.Tests.Cli;

namespace SpatialMllm.Research.Tests.Scenes;

/// <summary>A synthetic benchmark written as PNG frame folders (<c>synthetic --video-format frames</c>) is written and
/// answered with no ffmpeg: $SPATIAL_MLLM_FFMPEG names a missing binary, so any ffmpeg call would fail naming it.</summary>
public class FrameFolderBenchmarkTests
{
    static readonly Dictionary<string, string> NoFfmpeg = new()
    {
        ["SPATIAL_MLLM_FFMPEG"] = "/nowhere/ffmpeg", ["SPATIAL_MLLM_FFPROBE"] = "/nowhere/ffprobe",
    };

    [Fact]
    public void A_benchmark_written_as_frames_is_answered_with_no_ffmpeg()
    {
        string data = TestPaths.NewTempDir("frames-benchmark");
        var (code, output, error) = CliProcess.Finish(CliProcess.Start(data, NoFfmpeg,
            "synthetic", "--out", data, "--seeds", "3", "--frames", "8", "--width", "112", "--height", "84", "--per-type", "1", "--video-format", "frames"));
        Assert.True(code == 0, output + error);
        Assert.Equal(8, Directory.EnumerateFiles(Path.Combine(data, "synthetic", "seed0003"), "frame*.png").Count());
        Assert.Empty(Directory.EnumerateFiles(data, "*.mp4", SearchOption.AllDirectories));
        int questions = File.ReadAllLines(Path.Combine(data, "test.jsonl")).Length;

        string results = Path.Combine(data, "results.jsonl");
        (code, output, error) = CliProcess.Finish(CliProcess.Start(data, NoFfmpeg, "evaluate", "vsibench", "--model",
            Path.Combine(TestPaths.RepoRoot, "checkpoints", "rooms-tiny"), "--data", data, "--frames", "4", "--device", "cpu",
            "--max-new-tokens", "3", "--out", results));
        Assert.True(code == 0, output + error);
        Assert.Equal(questions, File.ReadAllLines(results).Length);
        Assert.DoesNotContain("ffmpeg", output + error);
    }
}
