using System.Text.Json;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Tests.Video;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Tests.Cli;

public class SampleFramesCommandTests
{
    static (int Exit, string Output, string Error) Invoke(params string[] args) => CliInvocation.Invoke(["sample-frames", .. args]);

    [Theory]
    [InlineData("uniform", new[] { 0, 3, 6, 9 })]      // round(linspace(0, 9, 4))
    [InlineData("keyframes", new[] { 0, 4, 9 })]       // 0, then 9 (farthest), then 4 (4 and 5 tie)
    public void Writes_the_selected_frames_and_their_indices(string sampler, int[] expected)
    {
        string dir = TestPaths.NewTempDir("cli-sample-frames");
        string video = TestVideos.Numbered(dir, "scene.mkv", frames: 10);
        string outDir = Path.Combine(dir, "out");

        var (exit, output, error) = Invoke("--video", video, "--sampler", sampler, "--k", sampler == "uniform" ? "4" : "3", "--out", outDir);

        Assert.True(exit == 0, error);
        Assert.Contains($"[{string.Join(", ", expected)}]", output);
        var selection = JsonSerializer.Deserialize<FrameSelection>(File.ReadAllText(Path.Combine(outDir, "selection.json")))!;
        Assert.Equal(expected, selection.Indices);
        string[] pngs = expected.Select(i => Path.Combine(outDir, $"scene_frame_{i:D6}.png")).ToArray();
        Assert.Equal(pngs.Order(), Directory.GetFiles(outDir, "*.png").Order());
        // The PNGs are the original frames, losslessly: read back as a frame folder they are the same pixels.
        using var written = VideoSource.Open(outDir).ReadFrames(Enumerable.Range(0, expected.Length).ToArray());
        using var original = VideoSource.Open(video).ReadFrames(expected);
        Assert.Equal(original.shape, written.shape);
        Assert.Equal(original.data<byte>().ToArray(), written.data<byte>().ToArray());
    }

    [Fact]
    public void Reads_a_frame_folder_too()
    {
        string dir = TestPaths.NewTempDir("cli-sample-folder");
        string scene = Directory.CreateDirectory(Path.Combine(dir, "scene0001")).FullName;
        TestVideos.NumberedPngs(scene, frames: 6);

        var (exit, output, error) = Invoke("--video", scene, "--k", "2", "--out", Path.Combine(dir, "out"));

        Assert.True(exit == 0, error);
        Assert.True(File.Exists(Path.Combine(dir, "out", "scene0001_frame_000005.png")));
    }

    [Fact]
    public void Space_aware_without_a_model_or_with_bad_input_fails_with_a_message()
    {
        string dir = TestPaths.NewTempDir("cli-sample-errors");
        string video = TestVideos.Numbered(dir, "scene.mkv", frames: 10);

        var noModel = Invoke("--video", video, "--sampler", "space-aware");
        Assert.Equal(1, noModel.Exit);
        Assert.Contains("--model", noModel.Error);

        var notConnected = Invoke("--video", video, "--sampler", "space-aware", "--model", dir, "--out", Path.Combine(dir, "sa"));
        Assert.Equal(1, notConnected.Exit);
        Assert.Contains("PointMapPredictors.FromModelFolder", notConnected.Error);

        var missing = Invoke("--video", Path.Combine(dir, "missing.mp4"));
        Assert.Equal(1, missing.Exit);
        Assert.Contains("missing.mp4", missing.Error);

        var tooMany = Invoke("--video", video, "--k", "16");
        Assert.Equal(1, tooMany.Exit);
        Assert.Contains("16 frames", tooMany.Error);

        Assert.NotEqual(0, Invoke("--video", video, "--sampler", "random").Exit);
    }

    [Fact]
    public void Space_aware_says_so_when_it_chooses_fewer_frames_than_asked()
    {
        // Eight copies of one picture: after the first frames nothing is left to cover, so the greedy pick stops early.
        string dir = TestPaths.NewTempDir("cli-sample-fewer");
        string video = TestVideos.Ffmpeg(dir, "still.mkv", "-f lavfi -i nullsrc=s=64x48:r=10,geq=r=X*4:g=Y*4:b=128 -frames:v 8 -c:v ffv1 -pix_fmt bgr0");

        var (exit, output, error) = Invoke("--video", video, "--sampler", "space-aware", "--model", TestPaths.TinyFixture, "--k", "4",
            "--cache", "none", "--out", Path.Combine(dir, "out"));

        Assert.True(exit == 0, error);
        var selection = JsonSerializer.Deserialize<FrameSelection>(File.ReadAllText(Path.Combine(dir, "out", "selection.json")))!;
        Assert.InRange(selection.Indices.Count, 1, 3);
        Assert.Contains($"note: space-aware sampling chose {selection.Indices.Count} frames, not --k 4", output);
    }
}
