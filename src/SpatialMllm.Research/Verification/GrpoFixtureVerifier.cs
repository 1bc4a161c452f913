using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Training.Grpo;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Verification;

/// <summary>
/// One GRPO step on the tiny reference fixture against TRL's loss computed by the reference model
/// (<c>grpo.safetensors</c> + <c>grpo.json</c>, made by <c>environment/fixtures/make_grpo_fixture.py</c>): the policy's
/// per-token log-probabilities of fixed completions, then per loss_type the loss, the KL and clip metrics and the gradients
/// of decoder, merger and connector weights, within the SFT fixture's tolerances.
/// </summary>
public static class GrpoFixtureVerifier
{
    public const string FileName = "grpo.safetensors", SpecName = "grpo.json";

    /// <summary>Checks named <c>per_token_logps</c>, <c>LOSS_TYPE.loss</c>, <c>.kl</c>, <c>.clip_ratio/region_mean</c> and
    /// <c>LOSS_TYPE.grad.KEY</c>.</summary>
    /// <param name="fixtureFolder">The folder holding grpo.safetensors and grpo.json.</param>
    /// <param name="tinyFolder">The tiny Spatial-MLLM fixture it was made from (config, weights, io.safetensors).</param>
    public static IReadOnlyList<TensorCheck> Verify(string fixtureFolder, string tinyFolder, Device? device = null)
    {
        device ??= torch.CPU;
        using var spec = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(fixtureFolder, SpecName)));
        var s = spec.RootElement;
        using var expected = SafetensorsFile.Open(Path.Combine(fixtureFolder, FileName));
        using var io = SafetensorsFile.Open(Path.Combine(tinyFolder, "io.safetensors"));
        using var model = SpatialMllmModel.Load(tinyFolder, device, ScalarType.Float32);
        var trainable = TrainableSet.Seed.Apply(model).ToDictionary(p => p.Key, p => p.Parameter);
        var config = new GrpoConfig
        {
            NumGenerations = s.GetProperty("num_generations").GetInt32(), Temperature = s.GetProperty("temperature").GetDouble(),
            Epsilon = s.GetProperty("epsilon").GetDouble(), EpsilonHigh = s.GetProperty("epsilon_high").GetDouble(), Beta = s.GetProperty("beta").GetDouble(),
            MaxCompletionLength = s.GetProperty("max_completion_length").GetInt32(),
        };
        int accumulation = s.GetProperty("gradient_accumulation_steps").GetInt32();
        double numItems = s.GetProperty("num_items_in_batch").GetDouble();

        var grid = io.Read("video_grid_thw").to(ScalarType.Int64).data<long>().ToArray();
        var gridThw = new GridThw((int)grid[0], (int)grid[1], (int)grid[2]);
        double secondPerGridT = io.Read("second_per_grid_ts").to(ScalarType.Float64).item<double>();
        int[] prompt = [.. expected.Read("prompt_ids").data<long>().Select(i => (int)i)];
        using var pixels = io.Read("pixel_values_videos", ScalarType.Float32, model.Device);
        using var frames = io.Read("video_tchw", ScalarType.Float32, model.Device);
        using var completionIds = expected.Read("completion_ids", device: device);
        using var mask = expected.Read("completion_mask", device: device);
        using var advantages = expected.Read("advantages", device: device);
        using var old = expected.Read("old_per_token_logps", device: device);
        using var reference = expected.Read("ref_per_token_logps", device: device);

        var checks = new List<TensorCheck>();
        foreach (var lossType in s.GetProperty("loss_types").EnumerateArray().Select(e => e.GetString()!))
        {
            using var scope = torch.NewDisposeScope();
            foreach (var p in trainable.Values) p.grad = null;
            var visual = model.EncodeForTraining(pixels, gridThw, frames);
            var (logProbs, _) = CompletionLogProbs.Compute(model, visual, prompt, gridThw, secondPerGridT, completionIds, config.Temperature);
            if (lossType == "grpo")
            {
                // Log-probs reach -80 (logits ~150 minus their logsumexp): float32 keeps them to an ulp of that size, so
                // they are compared relative to the largest, as the gradients are.
                var e = expected.Read("per_token_logps", device: device) * mask;
                double scale = Math.Max(e.abs().max().to(ScalarType.Float64).item<double>(), 1);
                checks.Add(Check("per_token_logps", (logProbs * mask).detach() / scale, e / scale, 1e-6));
            }
            var result = GrpoLoss.Compute(logProbs, mask, advantages, config with { LossType = lossType }, old, reference, accumulation, numItems);
            result.Loss.backward();
            checks.Add(Check($"{lossType}.loss", result.Loss.detach(), expected.Read($"{lossType}.loss", device: device).squeeze(), TrainingFixtureVerifier.ScalarTolerance));
            checks.Add(Check($"{lossType}.kl", torch.tensor(result.Kl!.Value, device: device), expected.Read($"{lossType}.kl", device: device).squeeze(), TrainingFixtureVerifier.ScalarTolerance));
            checks.Add(Check($"{lossType}.clip_ratio/region_mean", torch.tensor(result.ClipRegion, device: device), expected.Read($"{lossType}.clip_ratio/region_mean", device: device).squeeze(), 1e-6));
            foreach (string name in expected.Entries.Keys.Where(k => k.StartsWith($"{lossType}.grad.", StringComparison.Ordinal)))
            {
                string key = name[$"{lossType}.grad.".Length..];
                var e = expected.Read(name, device: device);
                double scale = Math.Max(e.abs().max().to(ScalarType.Float64).item<double>(), 1e-30);
                checks.Add(Check(name, trainable[key].grad!.detach() / scale, e / scale, TrainingFixtureVerifier.GradientTolerance));
            }
        }
        return checks;
    }

    static TensorCheck Check(string name, Tensor actual, Tensor expected, double tolerance)
    {
        double abs = (actual.to(ScalarType.Float64) - expected.to(ScalarType.Float64)).abs().max().item<double>();
        return new TensorCheck(name, abs, abs, tolerance, false, abs <= tolerance);
    }
}
