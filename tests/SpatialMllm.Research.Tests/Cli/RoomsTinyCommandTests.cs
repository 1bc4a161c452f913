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
}
