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
}
