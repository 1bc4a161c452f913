using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Modules;
using SpatialMllm.Research.TestSupport;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Tests.Models;
using TorchSharp;
using TorchSharp.Modules;
using static SpatialMllm.Research.TestSupport.LoraEdits;
using static SpatialMllm.Research.TestSupport.WeightEdits;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Lora;

/// <summary>
/// LoRA under the weight contract (issue 22): an adapter is part of the weights, so adding one, editing its lora_B in
/// place, merging, unmerging and disabling it are what the next forward computes on every path — the plain and fused
/// attention, the scripted decode step, a cached prompt prefix, a batch — and the encoders' VideoFeatures go stale as
/// after any encoder edit. The oracle is a freshly loaded model with the adapter's update merged into its weights.
/// </summary>
public sealed class LoraContractTests(TinyCheckpointOnDisk checkpoint) : TinyCheckpointTestBase(checkpoint)
{
    SpatialMllmModel Load() => Own(SpatialMllmModel.Load(Checkpoint.Folder, torch.CPU));

    VideoFeatures Encode(SpatialMllmModel model) => Own(model.EncodeFrames(Checkpoint.Frames));

    SpatialMllmModel MergedCopy(LoraModel lora) => Own(LoraEdits.MergedCopy(lora, () => SpatialMllmModel.Load(Checkpoint.Folder, torch.CPU)));

    public static TheoryData<DecoderPath> CpuPaths() =>
        [DecoderPath.EagerAttention, DecoderPath.Sdpa, DecoderPath.Fused, DecoderPath.Scripted, DecoderPath.SharedPrefix, DecoderPath.Batched];

    [Theory]
    [MemberData(nameof(CpuPaths))]
    public void An_adapter_and_an_in_place_edit_of_its_lora_B_are_what_the_next_forward_computes(DecoderPath path)
    {
        var model = Load();
        var features = Encode(model);
        var before = Logits(model, features, path); // warms the path: fused q/k/v, script, cached prefix
        var lora = LoraModel.Apply(model, AttentionAdapters);
        var fresh = Logits(model, features, path); // a fresh adapter (B = 0) changes nothing, and warms the path with it
        AssertClose(before, fresh, 1e-6, $"a fresh adapter on {path}");
        EditLoraB(lora);
        var after = Logits(model, features, path);

        var merged = MergedCopy(lora);
        AssertClose(Logits(merged, Encode(merged), path), after, 1e-5, $"lora_B edited in place, {path}");
        Assert.True(MaxDifference(before, after) > 1e-3, $"editing lora_B did not move the logits on {path}");
    }

    [Fact]
    public void A_fresh_adapter_is_PEFTs_init_and_only_its_weights_train()
    {
        var model = Load();
        var lora = LoraModel.Apply(model, AttentionAdapters with { LoraAlpha = 16 });
        Assert.Equal(3 * model.Config.Text.NumHiddenLayers, lora.Layers.Count);
        foreach (var layer in lora.Layers)
        {
            Assert.Equal(16.0 / 4, layer.scaling);
            Assert.Equal(0f, layer.lora_B.weight!.abs().max().item<float>());
            // kaiming_uniform_(a=√5) draws from ±√(6 / ((1 + 5)·fan_in)) = ±1/√fan_in.
            float bound = 1f / MathF.Sqrt(layer.base_layer.in_features), largest = layer.lora_A.weight!.abs().max().item<float>();
            Assert.InRange(largest, 0.5f * bound, bound);
            Assert.Equal([4, layer.base_layer.in_features], layer.lora_A.weight!.shape);
            Assert.Equal([layer.base_layer.out_features, 4], layer.lora_B.weight!.shape);
        }
        var trainable = model.Components().SelectMany(c => c.Module.named_parameters().Select(p => (Name: c.Prefix + p.name, p.parameter)))
            .Where(p => p.parameter.requires_grad).Select(p => p.Name).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(lora.named_parameters().Select(p => p.Name).Order(StringComparer.Ordinal), trainable);
        Assert.Contains("model.layers.0.self_attn.q_proj.lora_A.weight", trainable);
        Assert.Equal(16.0 / Math.Sqrt(4), (AttentionAdapters with { LoraAlpha = 16, UseRslora = true }).Scaling);
    }

    [Fact]
    public void Merging_unmerging_disabling_and_unloading_keep_every_path_equal_to_the_weights()
    {
        var model = Load();
        var features = Encode(model);
        var baseLogits = Logits(model, features, DecoderPath.SharedPrefix);
        var q = model.model.layers[0].self_attn.q_proj.weight!;
        using var original = q.detach().clone();
        var lora = LoraModel.Apply(model, AttentionAdapters);
        EditLoraB(lora);
        var adapted = Logits(model, features, DecoderPath.SharedPrefix);

        lora.merge_adapter();
        Assert.All(lora.Layers, l => Assert.True(l.merged));
        Assert.True(MaxDifference(adapted, Logits(model, features, DecoderPath.SharedPrefix)) <= 1e-5, "merged ≠ adapter");
        Assert.True(MaxDifference(adapted, Logits(model, features, DecoderPath.Scripted)) <= 1e-5, "merged, scripted step ≠ adapter");
        lora.unmerge_adapter();
        Assert.True(q.allclose(original, rtol: 0, atol: 1e-6), "merge then unmerge did not restore the base weight");
        Assert.True(MaxDifference(adapted, Logits(model, features, DecoderPath.SharedPrefix)) <= 1e-5, "unmerged ≠ adapter");

        // Off: the base model, through the prefix cached with the adapter on; on again: the adapter.
        using (lora.disable_adapter())
        {
            Assert.DoesNotContain(model.Language.named_parameters(), p => p.name.Contains("lora_", StringComparison.Ordinal));
            Assert.True(MaxDifference(baseLogits, Logits(model, features, DecoderPath.SharedPrefix)) <= 1e-5, "disabled ≠ base");
            Assert.True(MaxDifference(baseLogits, Logits(model, features, DecoderPath.Scripted)) <= 1e-5, "disabled, scripted ≠ base");
        }
        Assert.True(MaxDifference(adapted, Logits(model, features, DecoderPath.SharedPrefix)) <= 1e-5, "re-enabled ≠ adapter");

        var refused = Assert.Throws<InvalidOperationException>(() => CheckpointWriter.Save(model, TestPaths.NewTempDir("lora-save")));
        Assert.Contains("merge_and_unload", refused.Message);
        var plain = lora.merge_and_unload();
        Assert.Null(LoraModel.Of(plain));
        Assert.DoesNotContain(plain.Language.named_parameters(), p => p.name.Contains("lora_", StringComparison.Ordinal));
        Assert.True(MaxDifference(adapted, Logits(plain, features, DecoderPath.Fused)) <= 1e-5, "merge_and_unload ≠ adapter");
        string saved = TestPaths.NewTempDir("lora-merged");
        CheckpointWriter.Save(plain, saved);
        using var file = SafetensorsFile.Open(Path.Combine(saved, "model.safetensors"));
        Assert.Equal(StateDictKeys(Load()), file.Entries.Keys.Order(StringComparer.Ordinal).ToList());
    }

    static List<string> StateDictKeys(SpatialMllmModel model) => [.. model.StateDictShapes().Select(s => s.Key).Order(StringComparer.Ordinal)];

    [Fact]
    public void Adapters_on_the_vision_tower_VGGT_and_connector_change_the_features_and_make_earlier_ones_stale()
    {
        var model = Load();
        var before = Encode(model);
        var lora = LoraModel.Apply(model, new LoraConfig
        {
            R = 2, LoraAlpha = 4,
            TargetModulesPattern = @"visual\.blocks\.0\.attn\.qkv|visual\.blocks\.1\.mlp\.down_proj|spatial_encoder\.vggt_model\.aggregator\.(frame|global)_blocks\.0\.(attn\.qkv|mlp\.fc2)|connector\.mlp\.0|visual\.merger\.mlp\.2",
        });
        Assert.Equal(8, lora.Layers.Count);
        Assert.True(before.FusedEmbeds.allclose(Encode(model).FusedEmbeds, rtol: 0, atol: 1e-6), "a fresh adapter changed the features");
        var current = Encode(model);
        EditLoraB(lora, seed: 5);

        var stale = Assert.Throws<InvalidOperationException>(() => model.Answer(current, Question, Options(share: false)));
        Assert.Contains("lora_B.weight", stale.Message);
        var merged = MergedCopy(lora);
        var expected = Encode(merged).FusedEmbeds;
        var actual = Encode(model).FusedEmbeds;
        Assert.True(actual.allclose(expected, rtol: 0, atol: 1e-5), $"features differ from the merged model's by {(actual - expected).abs().max().item<float>():E2}");
        Assert.False(actual.allclose(before.FusedEmbeds, rtol: 0, atol: 1e-3), "the adapters did not move the features");
    }

    [Fact]
    public void Target_modules_follow_PEFTs_matching_and_a_miss_is_an_error()
    {
        var model = Load();
        var suffixes = LoraModel.Apply(model, new LoraConfig { TargetModules = ["gate_proj", "attn.qkv"] });
        // A suffix matches wherever a name ends in it: the vision tower's MLP too, and dotted suffixes across levels.
        Assert.Contains(suffixes.Layers, l => l.Name == "model.layers.1.mlp.gate_proj");
        Assert.Contains(suffixes.Layers, l => l.Name == "visual.blocks.0.mlp.gate_proj");
        Assert.Contains(suffixes.Layers, l => l.Name == "visual.blocks.0.attn.qkv");
        Assert.Contains(suffixes.Layers, l => l.Name.StartsWith("spatial_encoder.vggt_model.aggregator.frame_blocks.0.attn.qkv", StringComparison.Ordinal));
        Assert.Throws<InvalidOperationException>(() => LoraModel.Apply(model, new LoraConfig { TargetModules = ["q_proj"] }));
        suffixes.unload();
        Assert.Null(LoraModel.Of(model));

        // The decoder's projections only, as train's default.
        var decoder = LoraModel.Apply(model, new TrainingArguments { LoraR = 8 }.Lora!);
        Assert.Equal(7 * model.Config.Text.NumHiddenLayers, decoder.Layers.Count);
        Assert.All(decoder.Layers, l => Assert.StartsWith("model.layers.", l.Name));
        decoder.unload();

        var missing = Assert.Throws<ArgumentException>(() => LoraModel.Apply(model, new LoraConfig { TargetModules = ["query"] }));
        Assert.Contains("Target modules [query] not found in the base model", missing.Message);
        Assert.Contains("q_proj", missing.Message);
        var notLinear = Assert.Throws<ArgumentException>(() => LoraModel.Apply(model, new LoraConfig { TargetModules = ["self_attn"] }));
        Assert.Contains("model.layers.0.self_attn (Qwen2Attention)", notLinear.Message);
        Assert.Null(LoraModel.Of(model));
    }

    static void AssertClose(float[][] expected, float[][] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = MaxDifference(expected, actual);
        Assert.True(worst <= tolerance, $"{what}: logits differ by {worst:E2}");
    }
}
