using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>The tiny checkpoint (random weights, with a tokenizer) loaded once, and the fixture's frames.</summary>
public sealed class TinyModelFixture : IDisposable
{
    public TinyModelFixture()
    {
        string dir = TestPaths.NewTempDir("hooks-tiny");
        TinyCheckpoint.Create(dir);
        Model = SpatialMllmModel.Load(dir, torch.CPU);
        Frames = TinyFixture.Read("frames_uint8_tchw");
    }

    public SpatialMllmModel Model { get; }
    public Tensor Frames { get; }

    public void Dispose()
    {
        Model.Dispose();
        Frames.Dispose();
    }
}

public sealed class ModelHooksTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    const string Question = "How many chairs are in this room?";
    SpatialMllmModel Model => fixture.Model;

    [Fact]
    public void Replacing_fused_embeds_with_the_vision_tokens_reproduces_vision_only_token_for_token()
    {
        var options = new AnswerOptions(MaxNewTokens: 6);
        using var visionOnly = Model.EncodeFrames(fixture.Frames, options with { Fusion = FusionMode.VisionOnly });
        using var full = Model.EncodeFrames(fixture.Frames, options);
        Assert.False(full.FusedEmbeds.eq(visionOnly.FusedEmbeds).all().item<bool>());   // the connector does change the tokens

        Tensor? vision = null;
        VideoFeatures hooked;
        using (Model.Hooks.Add("vision_embeds", (_, t) => { vision = t.clone().DetachFromDisposeScope(); return null; }))
        using (Model.Hooks.Add("fused_embeds", (_, _) => vision))
            hooked = Model.EncodeFrames(fixture.Frames, options);
        using (hooked)
        using (vision)
        {
            Assert.True(hooked.FusedEmbeds.eq(visionOnly.FusedEmbeds).all().item<bool>());
            var (expected, expectedHidden) = AnswerWithFinalHidden(visionOnly, options);
            var (actual, actualHidden) = AnswerWithFinalHidden(hooked, options);
            var (_, fullHidden) = AnswerWithFinalHidden(full, options);
            Assert.Equal(expected.GeneratedIds, actual.GeneratedIds);
            Assert.True(actualHidden.eq(expectedHidden).all().item<bool>());
            Assert.False(fullHidden.eq(expectedHidden).all().item<bool>());
            expectedHidden.Dispose(); actualHidden.Dispose(); fullHidden.Dispose();
        }
        Assert.True(vision!.IsInvalid);   // the hook's copy was the test's to free, and is not used after
    }

    /// <summary>The answer and the prefill's final hidden states (model.norm's output at its first call).</summary>
    (Answer Answer, Tensor Hidden) AnswerWithFinalHidden(VideoFeatures features, AnswerOptions options)
    {
        Tensor? first = null;
        using var hook = Model.Hooks.Add("model.norm", (_, t) => { first ??= t.clone().DetachFromDisposeScope(); return null; });
        var answer = Model.Answer(features, Question, options);
        return (answer, first!);
    }

    [Fact]
    public void Leaving_the_scope_removes_the_hooks()
    {
        using var before = Model.EncodeFrames(fixture.Frames);
        int calls = 0;
        using (Model.Hooks.Add("vision_embeds", (_, t) => { calls++; return t * 0; }))
        using (Model.Hooks.Add("spatial_encoder.vggt_model.aggregator.global_blocks.*", (_, t) => { calls++; return null; }))
        {
            Assert.Equal(2, Model.Hooks.Patterns.Count);
            using var during = Model.EncodeFrames(fixture.Frames);
            Assert.False(during.FusedEmbeds.eq(before.FusedEmbeds).all().item<bool>());
        }
        int seen = calls;
        Assert.True(seen >= 2);
        Assert.False(Model.Hooks.Any);
        using var after = Model.EncodeFrames(fixture.Frames);
        Assert.True(after.FusedEmbeds.eq(before.FusedEmbeds).all().item<bool>());
        Assert.Equal(seen, calls);

        var handle = Model.Hooks.Add("fused_embeds", (_, _) => null);
        handle.Dispose();
        handle.Dispose();   // twice is harmless
        Assert.False(Model.Hooks.Any);
    }

    [Fact]
    public void Hooks_run_in_order_and_see_the_previous_replacement()
    {
        using var baseline = Model.EncodeFrames(fixture.Frames);
        using var a = Model.Hooks.Add("fused_embeds", (_, t) => t + 1);
        using var b = Model.Hooks.Add("fused_embeds", (_, t) => t * 2);
        using var features = Model.EncodeFrames(fixture.Frames);
        Assert.True(features.FusedEmbeds.allclose((baseline.FusedEmbeds + 1) * 2, rtol: 1e-6, atol: 1e-6));
    }

    [Fact]
    public void A_replacement_of_another_shape_or_an_unknown_point_is_a_clear_error()
    {
        using (Model.Hooks.Add("vision_embeds", (_, t) => t[..1]))
        {
            var e = Assert.Throws<ArgumentException>(() => Model.EncodeFrames(fixture.Frames).Dispose());
            Assert.Contains("'vision_embeds'", e.Message);
            Assert.Contains("keep the shape", e.Message);
        }
        var unknown = Assert.Throws<ArgumentException>(() => Model.Hooks.Add("fused_embed", (_, _) => null));
        Assert.Contains("model.layers.{i}", unknown.Message);
        Assert.False(Model.Hooks.Any);
    }

    [Fact]
    public void Every_advertised_point_is_reached_by_encoding_and_answering()
    {
        using var captured = Model.Hooks.Capture("*");
        using var features = Model.EncodeFrames(fixture.Frames);
        Model.Answer(features, Question, new AnswerOptions(MaxNewTokens: 3));
        Assert.Empty(Model.HookPoints.Except(captured.Names));
        // Decoder points run at the prefill and at each of the 2 cached steps; every call is kept.
        var layer = captured.Calls("model.layers.0");
        Assert.Equal(3, layer.Count);
        Assert.Equal(2, layer.Steps.Count);
        long promptLength = captured["input_ids"].shape[1];
        Assert.Equal(promptLength, layer.Prefill.shape[1]);
        Assert.All(layer.Steps, step => Assert.Equal(1, step.shape[1]));
        var probabilities = captured.Calls("model.layers.0.self_attn.attn_weights");
        Assert.Equal([1, Model.Config.Text.NumAttentionHeads, promptLength, promptLength], probabilities.Prefill.shape);
        Assert.Equal(promptLength + 2, probabilities.Steps[^1].shape[3]);   // the last step: [1, heads, 1, L + 2]
        Assert.True(probabilities.Steps[^1].sum(-1).allclose(torch.ones(1), rtol: 1e-5, atol: 1e-5));
        // A point that ran once reads as one tensor; asking a decoder point for one tensor says how often it ran.
        Assert.Equal(features.TokenCount, captured["fused_embeds"].shape[0]);
        var e = Assert.Throws<InvalidOperationException>(() => captured["model.layers.0"]);
        Assert.Contains("captured 3 times (1 outside decoding, 2 in decode steps)", e.Message);
        Assert.Contains("captured.Calls(\"model.layers.0\")", e.Message);
        Assert.Throws<KeyNotFoundException>(() => captured.Calls("model.layers.99"));
    }

    /// <summary>The final norm at the prefill's last position and at each decode step is what the next token was chosen
    /// from: through the LM head it gives the answer's step logits, in order.</summary>
    [Fact]
    public void Captured_steps_are_the_decode_steps_in_order()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var options = new AnswerOptions(Generation: new GenerationOptions([-1], MaxNewTokens: 4, ReturnStepLogits: true));
        Answer answer;
        using (var captured = Model.Hooks.Capture("model.norm"))
        {
            answer = Model.Answer(features, Question, options);
            var norm = captured.Calls("model.norm");
            Assert.Equal(4, norm.Count);   // the prompt, then tokens 0..2 fed back (the 4th is not)
            var head = Model.Language.lm_head?.weight ?? Model.model.EmbeddingWeight;
            Tensor[] lastPositions = [norm.Prefill[0].select(0, -1), .. norm.Steps.Select(s => s[0, 0])];
            for (int step = 0; step < 4; step++)
            {
                using var logits = torch.nn.functional.linear(lastPositions[step], head);
                Assert.True(logits.allclose(torch.tensor(answer.Logits![step]), rtol: 1e-5, atol: 1e-5), $"step {step}");
            }
        }

        // Around two answers the calls are kept in turn, and "the" prefill is ambiguous.
        using var twice = Model.Hooks.Capture("model.norm");
        Model.Answer(features, Question, options);
        Model.Answer(features, Question, options);
        var calls = twice.Calls("model.norm");
        Assert.Equal(8, calls.Count);
        Assert.Equal(6, calls.Steps.Count);
        Assert.True(calls[4].eq(calls[0]).all().item<bool>());
        Assert.Contains("2 forwards outside decoding", Assert.Throws<InvalidOperationException>(() => calls.Prefill).Message);
    }
}

/// <summary>Decoder hooks on the fixture checkpoint (its reference inputs, no tokenizer needed).</summary>
public sealed class DecoderHookTests
{
    [Fact]
    public void Zeroing_a_layer_output_changes_exactly_the_layers_after_it()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        int layers = model.model.layers.Count, k = layers / 2;
        Assert.True(layers >= 2);
        using var ids = TinyFixture.Read("input_ids");
        using var fused = TinyFixture.Read("fused_embeds");
        using var positions = TinyFixture.Read("position_ids");
        using var embeds = model.Language.EmbedWithVisualTokens(ids, fused, model.Config.Tokens.VideoTokenId);

        using var baseline = model.Hooks.Capture("model.layers.*", toCpu: false);
        using var baseLogits = model.Language.forward(embeds, positions);
        baseline.Stop();
        var zero = model.Hooks.Add($"model.layers.{k}", (_, t) => torch.zeros_like(t));
        using var hooked = model.Hooks.Capture("model.layers.*", toCpu: false);   // after the zeroing hook: sees its result
        using var zeroLogits = model.Language.forward(embeds, positions);
        hooked.Stop();
        zero.Dispose();

        Assert.True(hooked[$"model.layers.{k}"].eq(0).all().item<bool>());
        for (int i = 0; i < k; i++)
            Assert.True(hooked[$"model.layers.{i}"].eq(baseline[$"model.layers.{i}"]).all().item<bool>());
        for (int i = k + 1; i < layers; i++)
            Assert.False(hooked[$"model.layers.{i}"].allclose(baseline[$"model.layers.{i}"]));
        Assert.False(zeroLogits.allclose(baseLogits));

        // Zeroing the last layer: the final norm of zeros is zero, so the (bias-free) head gives logits of exactly 0.
        using (model.Hooks.Add($"model.layers.{layers - 1}", (_, t) => torch.zeros_like(t)))
        using (var lastZeroLogits = model.Language.forward(embeds, positions))
            Assert.True(lastZeroLogits.eq(0).all().item<bool>());
    }

    [Fact]
    public void The_eager_attention_a_probability_hook_switches_on_gives_the_same_logits()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var ids = TinyFixture.Read("input_ids");
        using var fused = TinyFixture.Read("fused_embeds");
        using var positions = TinyFixture.Read("position_ids");
        using var expected = TinyFixture.Read("logits");
        using var embeds = model.Language.EmbedWithVisualTokens(ids, fused, model.Config.Tokens.VideoTokenId);
        using var captured = model.Hooks.Capture("model.layers.*.self_attn.attn_weights");
        using var logits = model.Language.forward(embeds, positions).squeeze(0);
        Assert.True(logits.allclose(expected, rtol: 1e-4, atol: 1e-4));
        var p = captured["model.layers.0.self_attn.attn_weights"];                 // [1, heads, L, L]
        long length = ids.shape[1];
        Assert.Equal([1, model.Config.Text.NumAttentionHeads, length, length], p.shape);
        Assert.True(p.sum(-1).allclose(torch.ones(1), rtol: 1e-5, atol: 1e-5));
        Assert.True(p.triu(1).eq(0).all().item<bool>());                           // causal

        // Knocking out attention (uniform over the visible keys) changes the logits.
        using (model.Hooks.Add("model.layers.0.self_attn.attn_weights", (_, t) => torch.ones_like(t).tril().div(torch.ones_like(t).tril().sum(-1, keepdim: true))))
        using (var knocked = model.Language.forward(embeds, positions).squeeze(0))
            Assert.False(knocked.allclose(expected, rtol: 1e-4, atol: 1e-4));
    }

    [Fact]
    public void Only_a_hook_on_a_decoder_point_takes_decoding_off_the_fast_path()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        Assert.False(model.model.HasHooks);
        using (model.Hooks.Add("fused_embeds", (_, _) => null))
        using (model.Hooks.Add("spatial_encoder.vggt_model.aggregator.*", (_, _) => null))
            Assert.False(model.model.HasHooks);
        using (model.Hooks.Add("model.layers.*.self_attn.attn_weights", (_, _) => null))
            Assert.True(model.model.HasHooks);
        Assert.False(model.model.HasHooks);
        using (model.Hooks.Add("model.norm", (_, _) => null))
            Assert.True(model.model.HasHooks);
        Assert.False(model.model.HasHooks);
    }

    [Fact]
    public void A_decoder_hook_makes_scripted_decoding_fall_back_to_the_eager_path_for_every_token()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var ids = TinyFixture.Read("input_ids");
        using var fused = TinyFixture.Read("fused_embeds");
        using var positions = TinyFixture.Read("position_ids");
        using var deltas = TinyFixture.Read("rope_deltas");
        using var embeds = model.Language.EmbedWithVisualTokens(ids, fused, model.Config.Tokens.VideoTokenId);
        var options = new GenerationOptions([-1], MaxNewTokens: 4);
        model.Language.DecodeMode = DecodeStepMode.Scripted;
        try
        {
            using var plain = Generation.Generate(model.Language, ids, embeds, positions, deltas, options);
            using var captured = model.Hooks.Capture("model.layers.1");
            using var hooked = Generation.Generate(model.Language, ids, embeds, positions, deltas, options);
            Assert.Equal(4, captured.Calls("model.layers.1").Count);   // prefill + 3 cached steps, all eager
            Assert.Equal(3, captured.Calls("model.layers.1").Steps.Count);
            Assert.True(hooked.Sequences.eq(plain.Sequences).all().item<bool>());
        }
        finally { model.Language.DecodeMode = null; }
    }
}
