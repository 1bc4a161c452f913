using SpatialMllm.Research.Verification;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>Every expected tensor of the reference fixture, checked once by <see cref="FixtureVerifier"/> (what
/// <c>verify-fixture</c> runs): one row per tensor, each computed from the fixture's own inputs to its component.</summary>
public sealed class FixtureParityTests(FixtureParityTests.Checks checks, ITestOutputHelper output) : IClassFixture<FixtureParityTests.Checks>
{
    public sealed class Checks
    {
        public IReadOnlyDictionary<string, TensorCheck> ByName { get; } = FixtureVerifier.Verify(TestPaths.TinyFixture).ToDictionary(c => c.Name);
    }

    static readonly string[] Names =
    [
        "pixel_values_videos", "video_tchw", "vision_embeds", "position_ids", "rope_deltas",
        "spatial_tokens_first", "spatial_tokens_last", "fused_embeds",
        "vggt_pose_enc", "vggt_depth", "vggt_depth_conf", "vggt_world_points", "vggt_world_points_conf", "sa_selected_tiny_vggt_k2",
        "logits", "generated_ids", "generated_step_logits",
        "sa_selected_planted_k4", "sa_selected_planted_k8", "sa_selected_planted_k16",
    ];

    public static TheoryData<string> ExpectedTensors => [.. Names];

    [Theory]
    [MemberData(nameof(ExpectedTensors))]
    public void Expected_tensor_is_within_tolerance(string name)
    {
        var c = checks.ByName[name];
        output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} rel {c.MaxRelError:E2} tolerance {(c.Exact ? "exact" : c.Tolerance.ToString("E0"))} {c.Note}");
        Assert.True(c.Passed, $"{c.Name}: {c.MaxRelError:E2} {c.Note}");
    }

    [Fact]
    public void Every_check_has_a_row()
    {
        Assert.Equal(Names.Order(), checks.ByName.Keys.Order());
    }
}
