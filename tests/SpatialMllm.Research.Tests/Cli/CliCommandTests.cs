using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Tests.Video;

namespace SpatialMllm.Research.Tests.Cli;

public class CliCommandTests
{
    [Fact]
    public void Verify_fixture_passes_every_tensor_and_ends_with_the_count()
    {
        var (code, output, error) = CliInvocation.Invoke("verify-fixture", TestPaths.TinyFixture);
        Assert.True(code == 0, output + error);
        // 20 inference tensors + 78 fine-tuning checks (train.safetensors), one line each, named as in the fixture.
        Assert.Equal("98 of 98 tensors within tolerance", output.TrimEnd().Split('\n')[^1]);
        Assert.Matches(@"grad\.model\.embed_tokens\.weight\s+\S+\s+\S+\s+1E-004\s+pass", output);
        Assert.Matches(@"delta\.connector\.mlp\.2\.weight\s+\S+\s+\S+\s+1E-004\s+pass", output);
        Assert.Matches(@"lr_schedule_cosine_100\s+0\.00E\+000\s+\S+\s+exact\s+pass", output);
    }

    [Fact]
    public void Verify_fixture_in_bf16_reports_the_bf16_error_of_every_tensor()
    {
        var (_, output, error) = CliInvocation.Invoke("verify-fixture", TestPaths.TinyFixture, "--dtype", "bf16", "--tolerance", "0.15");
        Assert.True(error.Length == 0, error);
        Assert.Matches(@"logits\s+1\.\d+E-001\s+\S+\s+\S+\s+pass", output); // bf16 logits differ by ~0.14 on values up to 51
        Assert.Matches(@"generated_ids\s+0\.00E\+000.*pass", output);
        // Discrete outputs of bf16 point maps (the tiny VGGT's space-aware pick) may differ from the float32 fixture.
        Assert.Matches(@"\d+ of 98 tensors within tolerance", output);
    }

    [Fact]
    public void Verify_fixture_without_io_names_the_file()
    {
        string dir = TestPaths.NewTempDir("no-io");
        File.Copy(Path.Combine(TestPaths.TinyFixture, "config.json"), Path.Combine(dir, "config.json"));
        var (code, _, error) = CliInvocation.Invoke("verify-fixture", dir);
        Assert.Equal(1, code);
        Assert.Contains("io.safetensors", error);
    }

    [Fact]
    public void Inspect_counts_parameters_per_component()
    {
        var (code, output, _) = CliInvocation.Invoke("inspect", TestPaths.TinyFixture);
        Assert.Equal(0, code);
        Assert.Contains("VGGT aggregator", output);
        Assert.Matches(@"total\s+418\s+2,391,720", output);
    }

    [Fact]
    public void Demo_answers_about_a_video_with_stage_timings()
    {
        string dir = TestPaths.NewTempDir("demo");
        string model = Path.Combine(dir, "tiny");
        TinyCheckpoint.Create(model);
        string video = TestVideos.TestSrc(dir, "v.mp4", frames: 12, width: 96, height: 72);
        var (code, output, error) = CliInvocation.Invoke("demo", "--model", model, "--video", video, "--frames", "4", "--device", "cpu", "--max-new-tokens", "3");
        Assert.True(code == 0, output + error);
        Assert.Contains("key check: 418 loaded, 0 missing, 0 unexpected", output);
        Assert.Contains("answer: ", output);
        foreach (string stage in new[] { "decode frames", "preprocess", "vision tower", "VGGT aggregator", "connector", "generate (3 tokens)" })
            Assert.Contains(stage, output);
    }

    [Fact]
    public void Demo_with_a_model_and_no_video_writes_nothing_into_the_working_folder()
    {
        string model = Path.Combine(TestPaths.NewTempDir("demo-model"), "tiny");
        TinyCheckpoint.Create(model);
        string workingFolder = TestPaths.NewTempDir("demo-cwd");
        var (code, output, error) = CliProcess.Finish(CliProcess.Start(workingFolder,
            "demo", "--model", model, "--frames", "4", "--device", "cpu", "--max-new-tokens", "2"));
        Assert.True(code == 0, output + error);
        Assert.Contains($"video: {Path.Combine(Path.GetTempPath(), "spatial-mllm", "synthetic.mp4")}", output);
        Assert.Empty(Directory.EnumerateFileSystemEntries(workingFolder));
    }

    [Fact]
    public void Demo_by_default_answers_a_held_out_room_beside_the_ground_truth()
    {
        var (code, output, error) = CliProcess.Finish(CliProcess.Start(TestPaths.RepoRoot, "demo"));
        Assert.True(code == 0, output + error);
        Assert.Contains("checkpoints/rooms-tiny", output);
        Assert.Contains("seed999999", output);
        // One question of each type the scenes make, each answer beside its ground truth; the committed weights get some right.
        Assert.Equal(9, output.Split('\n').Count(line => line.Contains("ground truth:", StringComparison.Ordinal)));
        Assert.Contains("✓", output);
    }

    [Fact]
    public void Tiny_checkpoint_is_deterministic_for_a_seed()
    {
        string a = TestPaths.NewTempDir("tiny-a"), b = TestPaths.NewTempDir("tiny-b");
        TinyCheckpoint.Create(a);
        TinyCheckpoint.Create(b);
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "model.safetensors")), File.ReadAllBytes(Path.Combine(b, "model.safetensors")));
    }
}
