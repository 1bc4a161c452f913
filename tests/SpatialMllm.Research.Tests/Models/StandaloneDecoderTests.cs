using SpatialMllm.Research.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>
/// Each decoder layer, its attention and MLP, the final norm and the head run alone on the inputs a real forward gave them
/// (captured through the hooks), with the ordinary (cos, sin) of <c>model.model.rotary_emb</c>, and equal what they
/// computed inside the model (float32, Δ ≤ 1e-6).
/// </summary>
public sealed class StandaloneDecoderTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void Decoder_layers_their_parts_the_norm_and_the_head_run_alone_as_inside_the_model()
    {
        var model = fixture.Model;
        using var scope = torch.NewDisposeScope();
        using var features = model.EncodeFrames(fixture.Frames);
        int layers = model.model.layers.Count;
        // Layer outputs only: a hook on attn_weights would switch those layers to eager attention.
        using var captured = model.Hooks.Capture(["inputs_embeds", "position_ids", "model.norm", .. Enumerable.Range(0, layers).Select(i => $"model.layers.{i}")]);
        var generation = model.DefaultGeneration(maxNewTokens: 1) with { ReturnStepLogits = true };
        var answer = model.Answer(features, "How many chairs are in this room?", new AnswerOptions(MaxNewTokens: 1, Generation: generation));
        captured.Stop();

        var positions = captured.Calls("position_ids").Prefill;
        var x = captured.Calls("inputs_embeds").Prefill;
        var (cos, sin) = model.model.rotary_emb.forward(positions, x.dtype);
        using var noGrad = torch.no_grad();
        for (int i = 0; i < layers; i++)
        {
            var layer = model.model.layers[i];
            var expected = captured.Calls($"model.layers.{i}").Prefill;
            AssertClose(expected, layer.forward(x, cos, sin), $"model.layers[{i}]");
            // The same layer from its parts, as transformers' Qwen2_5_VLDecoderLayer.forward reads.
            var h = x + layer.self_attn.forward(layer.input_layernorm.forward(x), cos, sin);
            AssertClose(expected, h + layer.mlp.forward(layer.post_attention_layernorm.forward(h)), $"model.layers[{i}] from its parts");
            x = expected;
        }
        var normed = captured.Calls("model.norm").Prefill;
        AssertClose(normed, model.model.norm.forward(x), "model.norm");
        var lastLogits = model.lm_head.forward(normed.narrow(1, normed.shape[1] - 1, 1)).reshape(-1);
        AssertClose(torch.tensor(answer.Logits![0]), lastLogits, "lm_head");
    }

    static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double difference = (expected.to(ScalarType.Float64) - actual.to(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(difference <= 1e-6, $"{what} alone differs from the model's by {difference:E2}");
    }
}
