using SpatialMllm.Cli.Commands;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;

namespace SpatialMllm.Research.Tests.Cli;

/// <summary><c>spatial-mllm synthetic</c> writes a folder that <c>evaluate vsibench --data</c> runs on.</summary>
public class SyntheticCommandTests
{
    [Fact]
    public void Synthetic_writes_a_benchmark_that_evaluate_answers_with_the_tiny_model()
    {
        string data = TestPaths.NewTempDir("synthetic-cli");
        var (code, output, error) = CliInvocation.Invoke("synthetic", "--out", data, "--seeds", "3-4", "--frames", "16",
            "--width", "112", "--height", "84", "--per-type", "1");
        Assert.True(code == 0, output + error);
        var dataset = VsiBench.Load(Path.Combine(data, "test.jsonl"));
        Assert.Contains($"2 scene(s), {dataset.Count} questions", output);
        Assert.Equal(["seed0003", "seed0004"], dataset.Questions.Select(q => q.SceneName).Distinct().Order());

        string model = TestPaths.NewTempDir("synthetic-cli-model");
        TinyCheckpoint.Create(model);
        string results = Path.Combine(data, "results.jsonl");
        (code, output, error) = CliInvocation.Invoke("evaluate", "vsibench", "--model", model, "--data", data, "--frames", "4",
            "--device", "cpu", "--max-new-tokens", "2", "--out", results);
        Assert.True(code == 0, output + error);
        Assert.Equal(dataset.Questions.Select(q => q.Id.ToString()).Order(), PredictionFile.Read(results).Select(p => p.Id).Order());
    }

    [Theory]
    [InlineData("0-3", new[] { 0, 1, 2, 3 })]
    [InlineData("5,1,1-2", new[] { 5, 1, 2 })]
    public void Seeds_are_ranges_and_lists(string text, int[] expected) => Assert.Equal(expected, SyntheticCommand.ParseSeeds(text));

    [Theory]
    [InlineData("4-2")]
    [InlineData("a")]
    [InlineData("")]
    public void Bad_seeds_are_named(string text) =>
        Assert.Contains("--seeds", Assert.Throws<ArgumentException>(() => SyntheticCommand.ParseSeeds(text)).Message);
}
