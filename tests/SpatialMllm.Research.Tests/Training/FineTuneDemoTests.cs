using System.Diagnostics;
using SpatialMllm.Research.Demo;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Notebooks;
using SpatialMllm.Research.Training;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Training;

public class FineTuneDemoTests(ITestOutputHelper output)
{
    [Fact]
    public void Fine_tuning_the_tiny_model_on_colour_rooms_lowers_the_loss_and_raises_accuracy()
    {
        var tiny = Samples.TinyCheckpoint(Path.Combine(TestPaths.NewTempDir("finetune"), "tiny"));
        using var model = SpatialMllmModel.Load(tiny.ModelDir, torch.CPU);
        var builder = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens,
            new SftDataOptions { VideoMinFramePixels = 84 * 112, VideoMaxFramePixels = 84 * 112 });
        var train = ColorRooms.Make(12, seed: 1);
        var test = ColorRooms.Make(9, seed: 2);
        var examples = FineTuneDemo.Examples(model, builder, train);
        double before = FineTuneDemo.Accuracy(model, builder, test);
        var clock = Stopwatch.StartNew();
        var losses = FineTuneDemo.Train(model, examples, TrainableSet.Seed, steps: 120, learningRate: 1e-2, projectorLearningRate: 1e-2);
        double after = FineTuneDemo.Accuracy(model, builder, test);
        output.WriteLine($"train {clock.Elapsed.TotalSeconds:F1} s; accuracy {before:P0} → {after:P0}; loss {string.Join(" ", losses.Select(l => l.ToString("F2")))}");
        Assert.True(losses.TakeLast(6).Average() < 0.25 * losses.Take(6).Average());
        Assert.True(after >= before + 0.3, $"accuracy {before} → {after}");
    }
}
