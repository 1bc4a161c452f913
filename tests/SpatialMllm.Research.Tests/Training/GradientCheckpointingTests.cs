using SpatialMllm.Research.Lora;
using SpatialMllm.Research.TestSupport;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>
/// Gradient checkpointing (decoder layers, VGGT blocks) gives every trainable parameter the gradient it gets without,
/// whatever trains: the seed's sets, VGGT's last block pair behind frozen earlier blocks, LoRA adapters behind frozen
/// embeddings. The last two once got no backward at all (a reentrant checkpoint whose input needs no grad records none:
/// "element 0 of tensors does not require grad", first seen in the full-size LoRA benchmark on the GPU).
/// </summary>
public class GradientCheckpointingTests
{
    public enum Trained { SeedSet, SpatialEncoder, SpatialEncoderLastBlockPair, DecoderLora, AggregatorLora }

    [Theory]
    [InlineData(Trained.SeedSet)]
    [InlineData(Trained.SpatialEncoder)]
    [InlineData(Trained.SpatialEncoderLastBlockPair)]
    [InlineData(Trained.DecoderLora)]
    [InlineData(Trained.AggregatorLora)]
    public void Checkpointing_gives_the_same_gradients(Trained trained)
    {
        var plain = Gradients(trained, checkpointing: false);
        var checkpointed = Gradients(trained, checkpointing: true);
        Assert.NotEmpty(plain);
        Assert.Equal(plain.Keys.Order(), checkpointed.Keys.Order());
        foreach (var (key, g) in plain)
        {
            Assert.True(g.abs().max().item<float>() > 0, $"{key}: no gradient reached it");
            Assert.True(torch.allclose(g, checkpointed[key], rtol: 1e-5, atol: 1e-7),
                $"{key}: max |Δ| {(g - checkpointed[key]).abs().max().item<float>():E2}, max |g| {g.abs().max().item<float>():E2}");
        }
    }

    static Dictionary<string, Tensor> Gradients(Trained trained, bool checkpointing)
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU, ScalarType.Float32);
        model.model.GradientCheckpointing = checkpointing;
        model.spatial_encoder!.vggt_model.aggregator.GradientCheckpointing = checkpointing;
        IReadOnlyList<TrainableParameter> trainable = trained switch
        {
            Trained.SeedSet => TrainableSet.Seed.Apply(model),
            Trained.SpatialEncoder => new TrainableSet(TuneLanguage: false, TuneConnector: false, TuneSpatialEncoder: true).Apply(model),
            Trained.SpatialEncoderLastBlockPair => new TrainableSet(TuneLanguage: false, TuneConnector: false) { SpatialEncoderLastBlocks = 1 }.Apply(model),
            Trained.DecoderLora => LoraTraining.TrainableParameters(Adapters(model, TrainingArguments.DecoderProjections)),
            _ => LoraTraining.TrainableParameters(Adapters(model, @"spatial_encoder\.vggt_model\.aggregator\.(frame|global)_blocks\.\d+\.attn\.qkv")),
        };
        using var example = TinyFixture.FirstTrainingExample();
        SftObjective.Loss(model, example).backward();
        return trainable.Where(p => p.Parameter.grad is not null)
            .ToDictionary(p => p.Key, p => p.Parameter.grad!.clone().DetachFromDisposeScope());
    }

    /// <summary>Rank-2 adapters (dropout 0, which checkpointing needs) whose B is not zero, so that A gets a gradient too;
    /// A and B from the test's own generators. (A from PEFT's init draws on the global generator, which tests on other
    /// threads also draw on: the two runs compared once got different adapters.)</summary>
    static LoraModel Adapters(SpatialMllmModel model, string pattern)
    {
        var lora = LoraModel.Apply(model, new LoraConfig { R = 2, LoraAlpha = 4, LoraDropout = 0, TargetModulesPattern = pattern });
        using (torch.no_grad())
        using (var generator = new Generator(7))
            foreach (var layer in lora.Layers)
            {
                var a = layer.lora_A.weight!;
                using var uniform = torch.rand(a.shape, generator: generator).mul_(2).sub_(1).div_(Math.Sqrt(a.shape[1]));
                a.copy_(uniform);
            }
        LoraEdits.EditLoraB(lora);
        return lora;
    }
}
