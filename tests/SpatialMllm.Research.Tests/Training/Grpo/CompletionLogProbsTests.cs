using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Training.Grpo;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training.Grpo;

/// <summary>The completions' log-probabilities with their prompt run once for all K (the fast path) equal TRL's K full
/// sequences (the plain path), values and gradients, on the GRPO fixture's prompt and completions.</summary>
public class CompletionLogProbsTests
{
    [Theory]
    [InlineData(AttentionImplementation.Fused)]
    [InlineData(AttentionImplementation.Eager)]
    public void A_shared_prompt_gives_the_log_probs_and_gradients_of_K_full_sequences(AttentionImplementation implementation)
    {
        var (plain, plainGradients) = LogProbsAndGradients(implementation, sharePrompt: false);
        var (shared, sharedGradients) = LogProbsAndGradients(implementation, sharePrompt: true);
        Assert.True(RelativeError(plain, shared) < 1e-6, $"log-probs: {RelativeError(plain, shared):E2}");
        Assert.Equal(plainGradients.Keys.Order(), sharedGradients.Keys.Order());
        Assert.Contains("visual.merger.mlp.2.weight", plainGradients.Keys);   // the gradient reaches the prompt's video tokens
        foreach (var (key, g) in plainGradients)
            Assert.True(RelativeError(g, sharedGradients[key]) < 1e-5, $"{key}: {RelativeError(g, sharedGradients[key]):E2}");
    }

    static double RelativeError(Tensor expected, Tensor actual) =>
        ((expected.to(float64) - actual.to(float64)).abs().max() / expected.to(float64).abs().max().clamp_min(1e-30)).item<double>();

    static (Tensor LogProbs, Dictionary<string, Tensor> Gradients) LogProbsAndGradients(AttentionImplementation implementation, bool sharePrompt)
    {
        using var fixture = SafetensorsFile.Open(Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "grpo", "grpo.safetensors"));
        using var io = SafetensorsFile.Open(TinyFixture.IoPath);
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU, ScalarType.Float32);
        model.model.AttentionImplementation = implementation;
        var trainable = TrainableSet.Seed.Apply(model);
        using var scope = torch.NewDisposeScope();
        var grid = io.Read("video_grid_thw").data<long>().ToArray();
        var gridThw = new GridThw((int)grid[0], (int)grid[1], (int)grid[2]);
        var visual = model.EncodeForTraining(io.Read("pixel_values_videos", ScalarType.Float32), gridThw, io.Read("video_tchw", ScalarType.Float32));
        int[] prompt = [.. fixture.Read("prompt_ids").data<long>().Select(i => (int)i)];
        var (logProbs, _) = CompletionLogProbs.Compute(model, visual, prompt, gridThw, io.Read("second_per_grid_ts").to(ScalarType.Float64).item<double>(),
            fixture.Read("completion_ids"), temperature: 0.7, sharePrompt);
        // A loss that weighs every token differently, so that each position's gradient counts.
        (logProbs * torch.linspace(-1, 1, logProbs.numel()).view(logProbs.shape)).sum().backward();
        return (logProbs.detach().MoveToOuterDisposeScope(),
            trainable.Where(p => p.Parameter.grad is not null).ToDictionary(p => p.Key, p => p.Parameter.grad!.clone().MoveToOuterDisposeScope()));
    }
}
