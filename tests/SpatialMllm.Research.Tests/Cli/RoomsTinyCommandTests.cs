namespace SpatialMllm.Research.Tests.Cli;

/// <summary><c>rooms-tiny evaluate</c>'s arguments, refused before any room is rendered (the evaluation itself is tested
/// on rooms of the tests' own in Training/, never on the recipe's held-out rooms).</summary>
public class RoomsTinyCommandTests
{
    [Fact]
    public void Evaluate_names_the_samplers_it_takes()
    {
        var (code, _, error) = CliInvocation.Invoke("rooms-tiny", "evaluate", "--sampler", "keyframes");
        Assert.NotEqual(0, code);
        Assert.Contains("keyframes", error);
        Assert.Contains("uniform", error);
        Assert.Contains("space-aware", error);
    }

    [Fact]
    public void Evaluate_refuses_a_scene_count_outside_the_held_out_rooms()
    {
        var (code, _, error) = CliInvocation.Invoke("rooms-tiny", "evaluate", "--scenes", "0", "--geometry", "--sampler", "space-aware");
        Assert.NotEqual(0, code);
        Assert.Contains("--scenes must be 1 to 100; got 0.", error);
    }

    [Theory]
    [InlineData("--sft-batch", "0", "--sft-batch must be 1 to 1024; got 0.")]
    [InlineData("--sft-accumulation", "0", "--sft-accumulation must be at least 1; got 0.")]
    [InlineData("--per-type", "0", "--per-type must be at least 1; got 0.")]
    [InlineData("--vggt-width", "40", "--vggt-width must be a positive multiple of 16; got 40.")]
    [InlineData("--sft-warmup", "1.5", "--sft-warmup must be a fraction of the steps in [0, 1]; got 1.5.")]
    [InlineData("--sft-geometry-weight", "-1", "--sft-geometry-weight must be 0 or more; got -1.")]
    [InlineData("--device", "tpu", "--device: ")]
    public void Train_refuses_a_bad_option_naming_it_before_any_work(string option, string value, string message)
    {
        string work = TestPaths.NewTempDir("rooms-tiny-refused");
        var (code, _, error) = CliInvocation.Invoke("rooms-tiny", "train", "--work", work, "--out", Path.Combine(work, "out"), option, value);
        Assert.NotEqual(0, code);
        Assert.Contains(message, error);
        Assert.Empty(Directory.EnumerateFileSystemEntries(work));
    }

    [Fact]
    public void Train_refuses_a_geometry_loss_without_vggt_training()
    {
        string work = TestPaths.NewTempDir("rooms-tiny-refused");
        var (code, _, error) = CliInvocation.Invoke("rooms-tiny", "train", "--work", work, "--sft-geometry-weight", "0.5", "--fusion", "VisionOnly");
        Assert.NotEqual(0, code);
        Assert.Contains("--sft-geometry-weight needs VGGT in the model and training", error);
    }

    [Fact]
    public void The_video_format_is_mp4_or_frames()
    {
        foreach (string command in new[] { "train", "evaluate" })
        {
            var (code, _, error) = CliInvocation.Invoke("rooms-tiny", command, "--video-format", "avi");
            Assert.NotEqual(0, code);
            Assert.Contains("avi", error);
            Assert.Contains("frames", error);
        }
    }

    /// <summary>The point of <c>--video-format frames</c>: a GPU machine without ffmpeg trains. Here ffmpeg is made
    /// unusable for the process ($SPATIAL_MLLM_FFMPEG names a missing binary, so any ffmpeg call fails naming it).</summary>
    [Fact]
    public void Train_with_frames_needs_no_ffmpeg()
    {
        string dir = TestPaths.NewTempDir("rooms-tiny-frames");
        string work = Path.Combine(dir, "work"), model = Path.Combine(dir, "model");
        var noFfmpeg = new Dictionary<string, string> { ["SPATIAL_MLLM_FFMPEG"] = "/nowhere/ffmpeg", ["SPATIAL_MLLM_FFPROBE"] = "/nowhere/ffprobe" };
        var (code, output, error) = CliProcess.Finish(CliProcess.Start(dir, noFfmpeg, "rooms-tiny", "train", "--video-format", "frames",
            "--out", model, "--work", work, "--train-scenes", "2", "--per-type", "1", "--geometry-steps", "1", "--sft-steps", "2", "--sft-accumulation", "1"));
        Assert.True(code == 0, output + error);
        Assert.True(File.Exists(Path.Combine(model, "model.safetensors")), output);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(model, "sft-log.csv")).Length);   // header and 2 steps

        string data = Path.Combine(work, "data");
        Assert.Empty(Directory.EnumerateFiles(data, "*.mp4", SearchOption.AllDirectories));
        Assert.Equal(16, Directory.EnumerateFiles(Path.Combine(data, "synthetic", "seed1000"), "frame*.png").Count());
        Assert.Contains("\"video\":\"synthetic/seed1000\"", File.ReadAllText(Path.Combine(data, "train-conversations.jsonl")));
    }
}
