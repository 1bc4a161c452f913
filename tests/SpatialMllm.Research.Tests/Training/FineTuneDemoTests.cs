using System.Diagnostics;
using SpatialMllm.Research.Demo;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Notebooks;
using SpatialMllm.Research.Training;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>Notebook 07's fine-tune on colour rooms (the colour is only in the pixels): full and LoRA.</summary>
public class FineTuneDemoTests(ITestOutputHelper output)
{
    sealed record ColourRooms(SpatialMllmModel Model, SftExampleBuilder Builder, List<SftExample> Examples, IReadOnlyList<VideoQuestion> Test, double Before);

    static ColourRooms Setup(string name, torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        var tiny = Samples.TinyCheckpoint(Path.Combine(TestPaths.NewTempDir(name), "tiny"));
        var model = SpatialMllmModel.Load(tiny.ModelDir, torch.CPU, dtype);
        var builder = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens,
            new SftDataOptions { VideoMinFramePixels = 84 * 112, VideoMaxFramePixels = 84 * 112 });
        var test = ColorRooms.Make(9, seed: 2);
        return new ColourRooms(model, builder, FineTuneDemo.Examples(model, builder, ColorRooms.Make(12, seed: 1)), test,
            FineTuneDemo.Accuracy(model, builder, test));
    }

    [Fact]
    public void Fine_tuning_the_tiny_model_on_colour_rooms_lowers_the_loss_and_raises_accuracy()
    {
        var rooms = Setup("finetune");
        using var model = rooms.Model;
        var clock = Stopwatch.StartNew();
        var losses = FineTuneDemo.Train(model, rooms.Examples, TrainableSet.Seed, steps: 120, learningRate: 1e-2, projectorLearningRate: 1e-2);
        double after = FineTuneDemo.Accuracy(model, rooms.Builder, rooms.Test);
        output.WriteLine($"train {clock.Elapsed.TotalSeconds:F1} s; accuracy {rooms.Before:P0} → {after:P0}; loss {string.Join(" ", losses.Select(l => l.ToString("F2")))}");
        Assert.True(losses.TakeLast(6).Average() < 0.25 * losses.Take(6).Average());
        Assert.True(after >= rooms.Before + 0.3, $"accuracy {rooms.Before} → {after}");
    }

    [Fact]
    public void A_lora_fine_tune_of_the_tiny_model_on_colour_rooms_raises_accuracy()
    {
        var rooms = Setup("lora-finetune");
        using var model = rooms.Model;
        // The decoder's projections and the merger's and connector's linears: the colour is only in the pixels.
        torch.manual_seed(0);
        var lora = LoraModel.Apply(model, new LoraConfig
        {
            R = 8, LoraAlpha = 16, TargetModulesPattern = TrainingArguments.DecoderProjections + @"|visual\.merger\.mlp\.[02]|connector\.mlp\.[02]",
        });
        var clock = Stopwatch.StartNew();
        lora.train();
        var losses = FineTuneDemo.Train(model, rooms.Examples, LoraTraining.TrainableParameters(lora), steps: 120, learningRate: 3e-3, projectorLearningRate: 3e-3);
        lora.train(false);
        double after = FineTuneDemo.Accuracy(model, rooms.Builder, rooms.Test);
        var (trainable, all) = lora.get_nb_trainable_parameters();
        output.WriteLine($"LoRA: {trainable:N0} of {all:N0} parameters; train {clock.Elapsed.TotalSeconds:F1} s; accuracy {rooms.Before:P0} → {after:P0}; " +
                         $"loss {string.Join(" ", losses.Select(l => l.ToString("F2")))}");
        // The embedding and the tied head stay frozen, so the loss falls less than a full fine-tune's; the choice ranks first.
        Assert.True(losses.TakeLast(6).Average() < 0.85 * losses.Take(6).Average());
        Assert.True(after >= rooms.Before + 0.3, $"accuracy {rooms.Before} → {after}");
    }

    [Fact]
    public void Lora_adapters_train_in_float32_over_a_bfloat16_model()
    {
        var rooms = Setup("lora-bf16", torch.ScalarType.BFloat16);
        using var model = rooms.Model;
        torch.manual_seed(0);
        var lora = LoraModel.Apply(model, new LoraConfig { R = 4, LoraAlpha = 8, TargetModulesPattern = TrainingArguments.DecoderProjections });
        var trainable = LoraTraining.TrainableParameters(lora);
        // PEFT's autocast_adapter_dtype: the adapters stay float32 while the base weights are bf16.
        Assert.All(trainable, p => Assert.Equal(torch.ScalarType.Float32, p.Parameter.dtype));
        Assert.Equal(torch.ScalarType.BFloat16, model.model.layers[0].self_attn.q_proj.weight!.dtype);
        lora.train();
        var losses = FineTuneDemo.Train(model, rooms.Examples, trainable, steps: 4, learningRate: 1e-2, projectorLearningRate: 1e-2);
        Assert.All(losses, l => Assert.True(double.IsFinite(l), $"loss {l}"));
        var loraB = trainable.First(p => p.Key.EndsWith("q_proj.lora_B.weight", StringComparison.Ordinal)).Parameter;
        Assert.True(loraB.abs().max().item<float>() > 0, "lora_B did not move");
    }
}
