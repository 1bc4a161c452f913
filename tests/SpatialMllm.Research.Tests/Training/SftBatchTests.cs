using SpatialMllm.Research.Models;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>
/// SFT batches (<c>per_device_train_batch_size</c> &gt; 1) train as accumulating their examples one at a time would, and
/// the recipe's auxiliary geometry loss adds VGGT's own gradient to the SFT one: on a rooms-tiny-sized model and two
/// synthetic rooms' questions, every trainable tensor (vision tower, VGGT, connector, decoder) compared.
/// </summary>
public class SftBatchTests
{
    static readonly RoomsTinyRecipe Recipe = RoomsTinyRecipe.Default with { TrainSeeds = [950_100, 950_101], PerType = 1 };

    /// <summary>A fresh tiny model with everything trainable, and examples of both rooms (questions of different lengths).</summary>
    static (SpatialMllmModel Model, IReadOnlyList<TrainableParameter> Trainable, List<SftExample> Examples) Setup(string name)
    {
        string folder = TestPaths.NewTempDir(name), data = Path.Combine(folder, "data"), initial = Path.Combine(folder, "initial");
        SyntheticBenchmark.Write(data, Recipe.TrainSeeds, Recipe.Scene, Recipe.PerType);
        TinyCheckpoint.Create(initial, Recipe.InitSeed, configure: Recipe.ConfigureSizes);
        var model = SpatialMllmModel.Load(initial, torch.CPU, ScalarType.Float32);
        var trainable = new TrainableSet(TuneLanguage: true, TuneConnector: true, TuneVision: true, TuneSpatialEncoder: true).Apply(model);
        var args = Recipe.SftArguments(initial, data, Path.Combine(folder, "sft"));
        var (rows, errors) = SftAnnotations.Load(args.DatasetUse, args.DataPath);
        Assert.Empty(errors);
        using var builder = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens, args.DataOptions with { DecodedVideoCache = 0 });
        // Rows of both rooms, of several lengths (the padding is exercised).
        var examples = new[] { 0, 1, rows.Count - 1 }.Select(i => builder.Build(rows[i])).ToList();
        Assert.NotEqual(examples[0].VideoPath, examples[2].VideoPath);
        Assert.True(examples.Select(e => e.InputIds.Length).Distinct().Count() > 1, "the examples should differ in length");
        return (model, trainable, examples);
    }

    static Dictionary<string, Tensor> Gradients(IReadOnlyList<TrainableParameter> trainable, Action step)
    {
        foreach (var p in trainable) p.Parameter.grad = null;
        step();
        var grads = trainable.Where(p => p.Parameter.grad is not null).ToDictionary(p => p.Key, p => p.Parameter.grad!.clone().DetachFromDisposeScope());
        foreach (var p in trainable) p.Parameter.grad = null;
        return grads;
    }

    static void AssertClose(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual, string what)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (key, g) in expected)
            Assert.True(torch.allclose(actual[key], g, rtol: 1e-4, atol: 1e-7),
                $"{what} {key}: max |Δ| {(actual[key] - g).abs().max().item<float>():E2}, max |g| {g.abs().max().item<float>():E2}");
    }

    [Fact]
    public void A_batch_trains_as_accumulating_its_examples_one_at_a_time()
    {
        var (model, trainable, examples) = Setup("sft-batch");
        using var _ = model;
        var step = new OptimizerStep(trainable, null!, maxGradNorm: 1.0);
        double accumulatedLoss = 0;
        var accumulated = Gradients(trainable, () =>
        {
            foreach (var e in examples) accumulatedLoss += step.Accumulate(model, e, examples.Count);
        });
        (double Loss, double? Auxiliary) batched = default;
        var inOneForward = Gradients(trainable, () => batched = step.Accumulate(model, examples, examples.Count));

        Assert.Null(batched.Auxiliary);
        Assert.Equal(accumulatedLoss / examples.Count, batched.Loss, 4);
        Assert.Contains(accumulated.Keys, k => k.StartsWith("visual.blocks.", StringComparison.Ordinal));
        Assert.Contains(accumulated.Keys, k => k.Contains("aggregator", StringComparison.Ordinal));
        AssertClose(accumulated, inOneForward, "batched");
        foreach (var e in examples) e.Dispose();
    }

    [Fact]
    public void A_batch_of_one_without_an_auxiliary_loss_is_the_single_example_step()
    {
        var (model, trainable, examples) = Setup("sft-batch-one");
        using var _ = model;
        var step = new OptimizerStep(trainable, null!, maxGradNorm: 1.0);
        var single = Gradients(trainable, () => step.Accumulate(model, examples[0], 8));
        var asBatch = Gradients(trainable, () => step.Accumulate(model, [examples[0]], 8));
        Assert.Equal(single.Keys.Order(), asBatch.Keys.Order());
        foreach (var (key, g) in single) Assert.True(g.eq(asBatch[key]).all().item<bool>(), $"{key} differs");
        foreach (var e in examples) e.Dispose();
    }

    [Fact]
    public void The_geometry_loss_adds_vggts_own_gradient_to_the_sft_gradient()
    {
        Assert.Null((Recipe with { SftGeometryWeight = 0 }).SftGeometryLoss());   // weight 0: the seed's objective, untouched
        var (model, trainable, examples) = Setup("sft-geometry");
        using var _ = model;
        var recipe = Recipe with { SftGeometryWeight = 0.5 };
        using var geometry = recipe.SftGeometryLoss()!;
        var step = new OptimizerStep(trainable, null!, maxGradNorm: 1.0);
        const int examplesPerStep = 6;   // the batch is half of a step's examples: both losses weigh 3/6

        (double Loss, double? Auxiliary) combined = default;
        var total = Gradients(trainable, () => combined = step.Accumulate(model, examples, examplesPerStep, geometry.Loss));
        var sft = Gradients(trainable, () => SftObjective.Loss(model, examples).backward());
        double geometryLoss = 0;
        var vggt = Gradients(trainable, () =>
        {
            using var loss = geometry.Loss(model, examples);
            geometryLoss = loss.item<float>();
            loss.backward();
        });

        Assert.Equal(geometryLoss, combined.Auxiliary!.Value, 4);
        Assert.True(geometryLoss > 0);
        // VGGT's depth head is reached by the geometry loss alone; the decoder by the SFT loss alone.
        const string head = "spatial_encoder.vggt_model.depth_head.scratch.output_conv2.2.weight";
        Assert.DoesNotContain(head, sft.Keys);
        Assert.True(vggt[head].abs().max().item<float>() > 0);
        var expected = total.Keys.ToDictionary(k => k, k =>
            ((sft.TryGetValue(k, out var s) ? s : torch.zeros_like(total[k])) + (vggt.TryGetValue(k, out var v) ? v : torch.zeros_like(total[k]))) * (3.0 / examplesPerStep));
        AssertClose(expected, total, "SFT + geometry");
        foreach (var e in examples) e.Dispose();
    }
}
