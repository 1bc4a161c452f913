using System.Text.Json.Nodes;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Benchmarks;

/// <summary>
/// One SFT step of the full-size model as <c>../shared/tools/ref_train_step.py</c> times it: the seed's trainable set,
/// bf16 weights, 16 frames at 476×644 (3190 tokens, the last 16 in the loss), forward + backward + global clip + AdamW
/// through the trainer's own <see cref="OptimizerStep"/>.
/// With <c>lora</c>: LoRA adapters instead (r 16, alpha 32, dropout 0.05 — 0 under gradient checkpointing, which cannot
/// replay dropout masks — on the decoder's q/k/v/o/gate/up/down, float32 adapters as PEFT keeps them), the rest frozen.
/// </summary>
internal static class TrainStep
{
    const int Frames = 16, Height = 476, Width = 644, TextTokens = 62, AnswerTokens = 16;

    public static JsonObject Run(SpatialMllmConfig qwenConfig, int runs, bool gradientCheckpointing, bool lora, GpuMemoryMonitor memory)
    {
        var cuda = Timing.Cuda;
        var config = qwenConfig with { Spatial = SpatialEncoderConfig.Vggt1B, Connector = new ConnectorConfig("mlp_add", -1) };
        torch.manual_seed(0);
        using var model = SpatialMllmModel.Create(config, cuda, ScalarType.BFloat16);
        model.model.GradientCheckpointing = gradientCheckpointing;
        var adapters = lora ? LoraModel.Apply(model, new LoraConfig
        {
            R = 16, LoraAlpha = 32, LoraDropout = gradientCheckpointing ? 0 : 0.05, TargetModulesPattern = TrainingArguments.DecoderProjections,
        }) : null;
        adapters?.train();
        var trainable = adapters is null ? TrainableSet.Seed.Apply(model) : LoraTraining.TrainableParameters(adapters);
        using var optimizer = new AdamW(trainable);
        var schedule = CosineSchedule.FromRatio(100, 0.03);

        var grid = new GridThw(Frames / 2, Height / 14, Width / 14);
        var ids = MainStages.PromptIds(config.Tokens, grid.MergedTokenCount(2), TextTokens, config.Text.VocabSize).Select(i => (long)i).ToArray();
        var labels = ids.Select((id, i) => i >= ids.Length - AnswerTokens ? id : SftExample.IgnoreIndex).ToArray();
        using var example = new SftExample(ids, labels, torch.randn(grid.PatchCount, 3 * 2 * 14 * 14, ScalarType.BFloat16, cuda), grid, 0.5,
            torch.rand(Frames, 3, Height, Width, ScalarType.BFloat16, cuda), "benchmark");
        var optimizerStep = new OptimizerStep(trainable, optimizer, maxGradNorm: 1.0); // the trainer's step
        int step = 0;
        void Step()
        {
            optimizerStep.Begin();
            optimizerStep.Accumulate(model, example, accumulationSteps: 1);
            double factor = schedule.Factor(3 + step++);
            optimizerStep.Update(g => (g == ParameterGroup.Language ? 7e-6 : 2e-5) * factor);
        }
        string name = (lora ? "LoRA " : "") + (gradientCheckpointing ? "train step (gradient checkpointing)" : "train step");
        var (ms, peak, all) = Timing.Measure(name, runs, Step, memory, warmup: 2);
        return new JsonObject
        {
            ["gpu"] = MainStages.GpuName(), ["frames"] = Frames, ["height"] = Height, ["width"] = Width, ["tokens"] = ids.Length,
            ["trainable_params"] = trainable.Sum(p => p.Parameter.NumberOfElements), ["gradient_checkpointing"] = gradientCheckpointing,
            ["lora"] = adapters is null ? null : new JsonObject
            {
                ["r"] = adapters.peft_config.R, ["lora_alpha"] = adapters.peft_config.LoraAlpha, ["lora_dropout"] = adapters.peft_config.LoraDropout,
                ["target_modules"] = adapters.peft_config.TargetModulesText, ["adapted_layers"] = adapters.Layers.Count,
            },
            ["step"] = Timing.Stage(ms, peak, all),
        };
    }
}
