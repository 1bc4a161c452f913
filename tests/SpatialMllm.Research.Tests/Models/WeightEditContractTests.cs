using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.TestSupport;
using static SpatialMllm.Research.TestSupport.WeightEdits;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>
/// The research contract (issue 22): whatever a researcher does to the weights with a PyTorch idiom is what the next
/// forward computes, on every path. Each case warms a path up (fused q/k/v built, TorchScript step run, shared prefix
/// cached), applies the edit, asks again on that path, and compares the step logits with those of a freshly loaded model
/// carrying the same weights on the same path (float32, within 1e-5); the edit must also have moved the logits.
/// </summary>
public sealed class WeightEditContractTests(TinyCheckpointOnDisk checkpoint) : TinyCheckpointTestBase(checkpoint)
{
    public static TheoryData<DecoderEdit, DecoderPath> Matrix()
    {
        var data = new TheoryData<DecoderEdit, DecoderPath>();
        foreach (var edit in Enum.GetValues<DecoderEdit>())
            foreach (var path in new[] { DecoderPath.EagerAttention, DecoderPath.Sdpa, DecoderPath.Fused, DecoderPath.Scripted, DecoderPath.SharedPrefix, DecoderPath.Batched })
                data.Add(edit, path);
        return data;
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void A_decoder_edit_is_what_the_next_forward_computes(DecoderEdit edit, DecoderPath path)
    {
        var model = Load();
        var features = Own(model.EncodeFrames(Checkpoint.Frames));
        var before = Logits(model, features, path); // warms the path: fused weights, script, cached prefix
        Apply(model, edit);
        var after = Logits(model, features, path);

        var fresh = FreshCopyOf(model);
        var expected = Logits(fresh, Own(fresh.EncodeFrames(Checkpoint.Frames)), path);
        AssertSameLogits(expected, after, $"{edit} on {path}");
        Assert.True(MaxDifference(before, after) > 1e-4, $"{edit} did not move the logits on {path}");
    }

    [Fact]
    public void Features_encoded_before_an_encoder_edit_are_refused_and_re_encoding_gives_the_fresh_model()
    {
        var model = Load();
        var features = Own(model.EncodeFrames(Checkpoint.Frames));
        Logits(model, features, DecoderPath.SharedPrefix);
        using (torch.no_grad()) ((TorchSharp.Modules.Linear)model.visual.merger.mlp[2]).weight.mul_(1.5);

        var refused = Assert.Throws<InvalidOperationException>(() => model.Answer(features, Question, Options(share: true)));
        Assert.Contains("visual.merger.mlp.2.weight", refused.Message);
        Assert.Contains("Encode the video again", refused.Message);

        var fresh = FreshCopyOf(model);
        AssertSameLogits(Logits(fresh, Own(fresh.EncodeFrames(Checkpoint.Frames)), DecoderPath.SharedPrefix),
            Logits(model, Own(model.EncodeFrames(Checkpoint.Frames)), DecoderPath.SharedPrefix), "re-encoded after a merger edit");
    }

    [Fact]
    public void Features_are_refused_after_a_VGGT_or_connector_weight_change_but_2D_only_features_ignore_them()
    {
        var model = Load();
        var full = Own(model.EncodeFrames(Checkpoint.Frames));
        var visionOnly = Own(model.EncodeFrames(Checkpoint.Frames, new AnswerOptions(Fusion: FusionMode.VisionOnly)));
        using (torch.no_grad()) model.spatial_encoder!.vggt_model.aggregator.global_blocks[0].attn.proj.weight!.mul_(2);

        var refused = Assert.Throws<InvalidOperationException>(() => model.Answer(full, Question, Options(share: false)));
        Assert.Contains("aggregator.global_blocks.0.attn.proj.weight", refused.Message);
        Assert.NotEmpty(model.Answer(visionOnly, Question, Options(share: false)).GeneratedIds);

        // Another connector assigned (an ablation) leaves features alone: they are what the connector that made them
        // computes. A change to that connector's weights makes them stale.
        var current = Own(model.EncodeFrames(Checkpoint.Frames));
        var connector = model.connector!;
        model.connector = null;
        Assert.NotEmpty(model.Answer(current, Question, Options(share: false)).GeneratedIds);
        model.connector = connector;
        using (torch.no_grad()) ((nn.Module)connector).parameters().First().mul_(2);
        var trained = Assert.Throws<InvalidOperationException>(() => model.Answer(current, Question, Options(share: false)));
        Assert.Contains("connector.", trained.Message);
    }

    [Fact]
    public void A_pytorch_style_fine_tuning_loop_is_what_answering_computes()
    {
        var model = Load();
        var trainable = model.Language.parameters().Concat(model.visual.merger.parameters())
            .Concat(((nn.Module)model.connector!).parameters()).ToList();
        var optimizer = torch.optim.AdamW(trainable, lr: 3e-3);
        var target = model.Tokenizer.Encode("A B").ToArray();
        using var decoded = model.Processor.Process(Checkpoint.Frames);
        var before = Logits(model, Own(model.EncodeFrames(Checkpoint.Frames)), DecoderPath.Fused);
        var staleFeatures = Own(model.EncodeFrames(Checkpoint.Frames));
        var prompt = model.PromptIds(staleFeatures, Question);
        for (int step = 0; step < 5; step++)
        {
            using var scope = torch.NewDisposeScope();
            optimizer.zero_grad();
            var visual = model.EncodeForTraining(decoded.PixelValuesVideos, decoded.Grid, decoded.VideoTchw);
            int[] ids = [.. prompt, .. target];
            var inputIds = torch.tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0);
            var embeds = model.Language.EmbedWithVisualTokens(inputIds, visual, model.Config.Tokens.VideoTokenId);
            var positions = torch.arange(ids.Length).view(1, 1, -1).expand(3, 1, -1);
            var logits = model.Language.forward(embeds, positions);
            var predicted = logits[0].narrow(0, prompt.Length - 1, target.Length);
            var loss = nn.functional.cross_entropy(predicted, torch.tensor(target.Select(i => (long)i).ToArray()));
            loss.backward();
            optimizer.step();
        }

        Assert.Throws<InvalidOperationException>(() => model.Answer(staleFeatures, Question, Options(share: true)));
        var fresh = FreshCopyOf(model);
        foreach (var path in new[] { DecoderPath.Fused, DecoderPath.Scripted, DecoderPath.SharedPrefix })
        {
            var after = Logits(model, Own(model.EncodeFrames(Checkpoint.Frames)), path);
            AssertSameLogits(Logits(fresh, Own(fresh.EncodeFrames(Checkpoint.Frames)), path), after, $"after fine-tuning, {path}");
            Assert.True(MaxDifference(before, after) > 1e-3, "fine-tuning did not move the logits");
        }
    }

    [Fact]
    public void The_plain_and_fast_paths_give_the_same_logits()
    {
        var model = Load();
        var features = Own(model.EncodeFrames(Checkpoint.Frames));
        var eager = Logits(model, features, DecoderPath.EagerAttention);
        foreach (var path in new[] { DecoderPath.Sdpa, DecoderPath.Fused, DecoderPath.Scripted, DecoderPath.SharedPrefix })
        {
            double difference = MaxDifference(eager, Logits(model, features, path));
            Assert.True(difference <= 1e-5, $"{path} differs from transformers' eager attention by {difference:E2}");
        }
    }

    [Fact]
    public void The_fused_attention_keeps_no_copy_of_q_k_v()
    {
        var model = Load();
        var attention = model.model.layers[0].self_attn;
        Logits(model, Own(model.EncodeFrames(Checkpoint.Frames)), DecoderPath.Fused);
        using var noGrad = torch.no_grad();
        var (weight, bias) = attention.Fused.QkvWeights();
        // q/k/v's own parameters are rows of the tensor the GEMM reads: one storage, nothing to keep in step.
        Assert.Equal(TensorAddress.Of(weight), TensorAddress.Of(attention.q_proj.weight!));
        using (torch.no_grad()) attention.v_proj.bias!.fill_(0.25);
        Assert.Equal(0.25f, bias[^1].item<float>());
    }

    SpatialMllmModel Load() => Own(SpatialMllmModel.Load(Checkpoint.Folder, torch.CPU));

    SpatialMllmModel FreshCopyOf(SpatialMllmModel edited) => Own(WeightEdits.FreshCopyOf(edited, () => SpatialMllmModel.Load(Checkpoint.Folder, torch.CPU)));

    static void AssertSameLogits(float[][] expected, float[][] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = MaxDifference(expected, actual);
        Assert.True(worst <= 1e-5, $"{what}: logits differ from a freshly loaded model's by {worst:E2}");
    }
}
