using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Scenes;

using SpatialMllm.Research.Tests.Cli;

namespace SpatialMllm.Research.Tests.Scenes;

/// <summary>
/// Issue 23: `synthetic` had no upper bounds (<c>--frames 100000000</c> took the machine's memory, large widths ended in
/// stack traces) and wrote into an existing --out, keeping stale videos beside the new questions.
/// </summary>
public class SyntheticBoundsTests
{
    [Theory]
    [InlineData(new[] { "--frames", "100000000" }, "--frames must be 2 to 10000; got 100000000")]
    [InlineData(new[] { "--frames", "1" }, "--frames must be 2 to 10000; got 1")]
    [InlineData(new[] { "--width", "100000" }, "--width must be an even number from 16 to 4096; got 100000")]
    [InlineData(new[] { "--height", "4097" }, "--height must be an even number from 16 to 4096; got 4097")]
    [InlineData(new[] { "--width", "4096", "--height", "4096" }, "--width × --height must be at most 2073600 pixels (1920×1080); got 4096×4096")]
    [InlineData(new[] { "--per-type", "0" }, "--per-type must be 1 or more; got 0")]
    [InlineData(new[] { "--seeds", "0-2000000000" }, "--seeds: '0-2000000000' names more than 100000 scenes")]
    [InlineData(new[] { "--frames", "99999999999" }, "--frames")]
    public void Sizes_out_of_bounds_are_refused_naming_the_flag_before_anything_is_written(string[] flags, string message)
    {
        string folder = Path.Combine(TestPaths.NewTempDir("synthetic-bounds"), "out");
        var (code, _, error) = CliInvocation.Invoke(["synthetic", "--out", folder, .. flags]);
        Assert.Equal(1, code);
        Assert.Contains(message, error);
        Assert.DoesNotContain("   at ", error);
        Assert.False(Directory.Exists(folder));
    }

    [Fact]
    public void The_library_refuses_the_same_sizes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticScene.Create(0, new SyntheticSceneOptions(Frames: SyntheticSceneOptions.MaxFrames + 1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticScene.Create(0, new SyntheticSceneOptions(Width: 4096, Height: 4096)));
    }

    [Fact]
    public void An_existing_out_is_refused_and_force_replaces_the_earlier_scenes_keeping_other_files()
    {
        string folder = TestPaths.NewTempDir("synthetic-out");
        string[] small = ["--frames", "4", "--width", "32", "--height", "24", "--per-type", "1"];
        var (code, output, error) = CliInvocation.Invoke(["synthetic", "--out", folder, "--seeds", "1-2", .. small]);
        Assert.True(code == 0, output + error);
        File.WriteAllText(Path.Combine(folder, "notes.txt"), "mine");

        (code, _, error) = CliInvocation.Invoke(["synthetic", "--out", folder, "--seeds", "3", .. small]);
        Assert.Equal(1, code);
        Assert.Contains("is not empty", error);
        Assert.Contains("--force", error);
        Assert.False(File.Exists(Path.Combine(folder, "synthetic", "seed0003.mp4")));

        (code, output, error) = CliInvocation.Invoke(["synthetic", "--out", folder, "--seeds", "3", "--force", .. small]);
        Assert.True(code == 0, output + error);
        Assert.Equal(["seed0003.mp4"], Directory.GetFiles(Path.Combine(folder, "synthetic")).Select(Path.GetFileName));
        Assert.Equal(["seed0003"], VsiBench.Load(Path.Combine(folder, "test.jsonl")).Questions.Select(q => q.SceneName).Distinct());
        Assert.Equal("mine", File.ReadAllText(Path.Combine(folder, "notes.txt")));
        Assert.Contains("kept the other files there: notes.txt", output);
    }
}
