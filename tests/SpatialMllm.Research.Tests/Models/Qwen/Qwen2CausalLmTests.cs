using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Qwen;

[Collection(TinyFixtureCollection.Name)]
public class Qwen2CausalLmTests(TinyFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public void Checkpoint_keys_under_model_all_load_and_the_head_is_tied()
    {
        fixture.LmReport.ThrowIfIncomplete("model.");
        Assert.Equal(26, fixture.LmReport.Loaded.Count);
        Assert.DoesNotContain(fixture.LmReport.Loaded, k => k.StartsWith("lm_head"));
    }

    [Fact]
    public void Chunked_prefill_through_the_cache_equals_one_pass()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var (positions, _) = fixture.RopeIndexOfFixture();
        var embeds = fixture.FusedInputsEmbeds(fixture.Lm);
        var whole = fixture.Lm.forward(embeds, positions);
        // Capacity 8 forces two regrowths.
        using var cache = new Qwen2KvCache(fixture.Lm.Config.NumHiddenLayers, capacity: 8);
        var parts = new List<Tensor>();
        foreach (var (start, length) in new[] { (0, 20), (20, 1), (21, 23) })
            parts.Add(fixture.Lm.forward(embeds.narrow(1, start, length), positions.narrow(2, start, length), cache));
        Assert.Equal(44, cache.Length);
        Assert.True(TensorComparison.MaxError(whole, torch.cat(parts, 1)) < 1e-5);
    }

    [Fact]
    public void A_reset_cache_is_reused_for_another_sequence_and_reallocated_for_another_batch()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var (positions, _) = fixture.RopeIndexOfFixture();
        var embeds = fixture.FusedInputsEmbeds(fixture.Lm);
        using var fresh = new Qwen2KvCache(fixture.Lm.Config.NumHiddenLayers, capacity: 64);
        var expected = fixture.Lm.forward(embeds, positions, fresh);

        // A cache that held another (longer, different) sequence: reset, its stale slots must not leak in.
        using var reused = new Qwen2KvCache(fixture.Lm.Config.NumHiddenLayers, capacity: 64);
        fixture.Lm.forward(torch.cat([embeds, embeds], 1), torch.cat([positions, positions], 2), reused);
        reused.Reset();
        Assert.True(TensorComparison.MaxError(expected, fixture.Lm.forward(embeds, positions, reused)) < 1e-6);

        // Then a batch of two: the buffers no longer fit and are allocated again.
        reused.Reset();
        var two = fixture.Lm.forward(torch.cat([embeds, embeds], 0), torch.cat([positions, positions], 1), reused);
        Assert.True(TensorComparison.MaxError(expected, two.narrow(0, 1, 1)) < 1e-5);
    }

    [Fact]
    public void Bfloat16_forward_stays_close_to_float32()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        using var lm = new Qwen2CausalLm(fixture.Checkpoint.Config.Text, dtype: ScalarType.BFloat16);
        lm.LoadFrom(fixture.Checkpoint).ThrowIfIncomplete("model.");
        var (positions, _) = fixture.RopeIndexOfFixture();
        var logits = lm.forward(fixture.FusedInputsEmbeds(lm), positions);
        Assert.Equal(ScalarType.BFloat16, logits.dtype);
        var expected = TinyFixture.Read("logits");
        var absolute = (logits.squeeze(0).to(ScalarType.Float32) - expected).abs();
        double maxAbs = absolute.max().item<float>(), scale = expected.abs().max().item<float>();
        output.WriteLine($"bf16 logits: max abs error {maxAbs:E2} (logit range ±{scale:F3}); argmax agreement {logits.squeeze(0).argmax(-1).eq(expected.argmax(-1)).to(ScalarType.Float32).mean().item<float>():P0}");
        Assert.True(maxAbs < 0.05 * Math.Max(1, scale), $"bf16 max abs error {maxAbs}");
    }

    [Fact]
    public void A_sequence_longer_than_max_position_embeddings_is_a_clear_error()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        int max = fixture.Lm.Config.MaxPositionEmbeddings;
        var ids = torch.ones(1, max + 1, ScalarType.Int64);
        var positions = torch.arange(max + 1).view(1, 1, -1).expand(3, 1, max + 1);
        var e = Assert.Throws<ArgumentException>(() => fixture.Lm.forward(fixture.Lm.model.EmbedTokens(ids), positions));
        Assert.Contains("max_position_embeddings", e.Message);
        Assert.Contains($"{max + 1}", e.Message);
        var g = Assert.Throws<ArgumentException>(() => Generation.Generate(fixture.Lm, ids, new GenerationOptions([991], MaxNewTokens: 4)));
        Assert.Contains("max_position_embeddings", g.Message);
    }

    [Fact]
    public void Visual_token_count_mismatch_is_a_clear_error()
    {
        using var scope = torch.NewDisposeScope();
        var ids = TinyFixture.Read("input_ids");
        var tooFew = torch.zeros(23, 64);
        var e = Assert.Throws<ArgumentException>(() => fixture.Lm.EmbedWithVisualTokens(ids, tooFew, fixture.Checkpoint.Config.Tokens.VideoTokenId));
        Assert.Contains("24 tokens", e.Message);
    }
}
