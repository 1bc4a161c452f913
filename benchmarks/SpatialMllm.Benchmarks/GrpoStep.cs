using System.Diagnostics;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Training.Grpo;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Benchmarks;

/// <summary>
/// One GRPO step of the full-size model (issue 24) as <see cref="GrpoTrainer"/> takes it, from the same parts, on one
/// question of 16 frames at 476×644 (3190 prompt tokens): the rollout (encode without a graph, K completions of T tokens
/// sampled in one batch after one shared prefix), the frozen reference's log-probs (a second copy, TRL's ref_model, for
/// β = 0.04), the policy's log-probs with a graph, the loss, the backward and the trainer's <see cref="OptimizerStep"/>.
/// The seed's trainable set, bf16; the prompt run once for the K completions (<see cref="CompletionLogProbs"/>' shared
/// prompt, the trainer's default without gradient checkpointing), where the baseline runs K full sequences with checkpointing.
/// Completions run to T tokens (the eos is a padding row of the vocabulary). <c>benchmarks/reference/grpo_step_reference.py</c>
/// times the same step with transformers in the same call.
/// </summary>
internal static class GrpoStep
{
    const int Frames = 16, Height = 476, Width = 644, TextTokens = 62;

    public static JsonObject Run(SpatialMllmConfig qwenConfig, int runs, int completions, int completionTokens, GpuMemoryMonitor memory)
    {
        var cuda = Timing.Cuda;
        var config = qwenConfig with { Spatial = SpatialEncoderConfig.Vggt1B, Connector = new ConnectorConfig("mlp_add", -1) };
        var grpo = new GrpoConfig { NumGenerations = completions, MaxCompletionLength = completionTokens, Beta = 0.04 };
        torch.manual_seed(0);
        using var model = SpatialMllmModel.Create(config, cuda, ScalarType.BFloat16);
        var trainable = TrainableSet.Seed.Apply(model);
        torch.manual_seed(0);
        using var reference = FrozenCopyReference.Of(SpatialMllmModel.Create(config, cuda, ScalarType.BFloat16), vggtFrozen: true);
        using var optimizer = new AdamW(trainable);
        var optimizerStep = new OptimizerStep(trainable, optimizer, maxGradNorm: 1.0);

        var grid = new GridThw(Frames / 2, Height / 14, Width / 14);
        int[] prompt = MainStages.PromptIds(config.Tokens, grid.MergedTokenCount(2), TextTokens, config.Text.VocabSize);
        using var pixels = torch.randn(grid.PatchCount, 3 * 2 * 14 * 14, ScalarType.BFloat16, cuda);
        using var frames = torch.rand(Frames, 3, Height, Width, ScalarType.BFloat16, cuda);
        const double secondPerGridT = 0.5;
        // Generation needs an eos: the vocabulary's last row, a padding row of Qwen2.5-VL's embedding that a random model
        // samples about once in 150k tokens, so that completions run to T tokens.
        var sampling = new GenerationOptions([config.Text.VocabSize - 1], completionTokens, DoSample: true, Temperature: grpo.Temperature, TopK: grpo.TopK, TopP: grpo.TopP);
        var rolloutMs = new List<double>(); var encodeMs = new List<double>(); var referenceMs = new List<double>(); var policyMs = new List<double>();
        int step = 0;

        void Step()
        {
            using var scope = torch.NewDisposeScope();
            var clock = Stopwatch.StartNew();
            // Rollout: as GrpoGroup.Sample.
            Tensor spatial, visual, completionIds;
            using (torch.no_grad())
            {
                spatial = model.SpatialTokens(frames);
                visual = model.EncodeForTraining(pixels, grid, frames, spatial);
                Timing.Sync();
                encodeMs.Add(clock.Elapsed.TotalMilliseconds);
                using var features = VideoFeatures.FromTensors(visual, grid, secondPerGridT);
                var seeds = Enumerable.Range(0, completions).Select(k => (ulong)(1000 * step + k)).ToArray();
                using var result = model.GenerateBatch(Enumerable.Repeat(prompt, completions).ToList(), model.SharedPrefixLength(prompt),
                    features, sampling with { RowSeeds = seeds });
                completionIds = result.Sequences.clone();
            }
            var mask = torch.ones(completionIds.shape, ScalarType.Float32, cuda);
            Timing.Sync();
            rolloutMs.Add(clock.Elapsed.TotalMilliseconds);
            // The reference's log-probs: as FrozenCopyReference.
            clock.Restart();
            var referenceLogProbs = reference.PerTokenLogProbs(pixels, grid, frames, secondPerGridT, spatial, prompt, completionIds, grpo.Temperature);
            Timing.Sync();
            referenceMs.Add(clock.Elapsed.TotalMilliseconds);
            // The policy's update: as GrpoTrainer.Train (rewards are the caller's code: fixed advantages here).
            clock.Restart();
            optimizerStep.Begin();
            var policyVisual = model.EncodeForTraining(pixels, grid, frames, spatial);
            var (logProbs, _) = CompletionLogProbs.Compute(model, policyVisual, prompt, grid, secondPerGridT, completionIds, grpo.Temperature,
                sharePrompt: true);
            var advantages = torch.linspace(-1, 1, completions, ScalarType.Float32, cuda);
            var loss = GrpoLoss.Compute(logProbs, mask, advantages, grpo, null, referenceLogProbs, 1, completions * completionTokens);
            loss.Loss.backward();
            optimizerStep.Update(g => (g == ParameterGroup.Language ? 1e-6 : 2e-6));
            Timing.Sync();
            policyMs.Add(clock.Elapsed.TotalMilliseconds);
            step++;
        }
        var (ms, peak, all) = Timing.Measure($"GRPO step (K {completions}, {completionTokens} tokens)", runs, Step, memory, warmup: 1);
        static double Median(List<double> parts) => parts.Skip(1).Order().ElementAt((parts.Count - 1) / 2);
        return new JsonObject
        {
            ["gpu"] = MainStages.GpuName(), ["frames"] = Frames, ["height"] = Height, ["width"] = Width, ["prompt_tokens"] = prompt.Length,
            ["completions"] = completions, ["completion_tokens"] = completionTokens, ["beta"] = grpo.Beta, ["loss_type"] = grpo.LossType,
            ["temperature"] = grpo.Temperature, ["trainable_params"] = trainable.Sum(p => p.Parameter.NumberOfElements), ["gradient_checkpointing"] = false, ["shared_prompt"] = true,
            ["step"] = Timing.Stage(ms, peak, all),
            // Medians of the parts over the measured steps (the warm-up step left out), as the baseline reports them.
            ["rollout_ms"] = Median(rolloutMs), ["rollout_encode_ms"] = Median(encodeMs), ["reference_ms"] = Median(referenceMs),
            ["policy_update_ms"] = Median(policyMs),
        };
    }
}
