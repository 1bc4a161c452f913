using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Qwen;

[Collection(TinyFixtureCollection.Name)]
public class GenerationTests(TinyFixture fixture, ITestOutputHelper output)
{
    GenerationResult GenerateFromFixture(GenerationOptions options)
    {
        using var scope = torch.NewDisposeScope();
        var ids = TinyFixture.Read("input_ids");
        var (positions, deltas) = fixture.RopeIndexOfFixture();
        return Generation.Generate(fixture.Lm, ids, fixture.FusedInputsEmbeds(fixture.Lm), positions, deltas, options);
    }

    IReadOnlyList<int> Eos => fixture.Checkpoint.Config.Tokens.EosTokenIds;

    [Fact]
    public void Scripted_static_decode_reproduces_the_fixture_and_the_eager_step_logits()
    {
        // The script CUDA graphs capture: the cache slot as a tensor, attention over the whole capacity under a mask.
        var options = new GenerationOptions(Eos, MaxNewTokens: 6, ReturnStepLogits: true);
        using var eager = GenerateFromFixture(options);
        GenerationResult scripted;
        fixture.Lm.DecodeMode = DecodeStepMode.Scripted;
        try { scripted = GenerateFromFixture(options); }
        finally { fixture.Lm.DecodeMode = null; }
        using (scripted)
        {
            using var expectedIds = TinyFixture.Read("generated_ids");
            using var expectedLogits = TinyFixture.Read("generated_step_logits");
            Assert.Equal(TensorComparison.Longs(expectedIds), TensorComparison.Longs(scripted.Sequences));
            using var steps = torch.cat(scripted.StepLogits.ToArray(), 0);
            using var eagerSteps = torch.cat(eager.StepLogits.ToArray(), 0);
            double error = TensorComparison.MaxError(expectedLogits, steps), vsEager = TensorComparison.MaxError(eagerSteps, steps);
            output.WriteLine($"scripted generated_step_logits max error {error:E2} vs fixture, {vsEager:E2} vs eager");
            Assert.True(error < 1e-4, $"max error {error}");
            Assert.True(vsEager < 1e-5, $"max error vs eager {vsEager}");
        }
    }

    [Fact]
    public void Sampling_is_reproducible_with_a_seed()
    {
        var options = new GenerationOptions(Eos, MaxNewTokens: 8, DoSample: true, Temperature: 5.0, TopK: 0, Seed: 42);
        using var a = GenerateFromFixture(options);
        using var b = GenerateFromFixture(options);
        using var c = GenerateFromFixture(options with { Seed = 43 });
        Assert.Equal(TensorComparison.Longs(a.Sequences), TensorComparison.Longs(b.Sequences));
        // At temperature 5 over 1000 tokens, two seeds agreeing on 8 tokens would be a broken generator.
        Assert.NotEqual(TensorComparison.Longs(a.Sequences), TensorComparison.Longs(c.Sequences));
    }

    [Fact]
    public void Top_k_1_sampling_equals_greedy_and_the_evaluation_preset_is_greedy_after_the_penalty()
    {
        using var greedy = GenerateFromFixture(new GenerationOptions(Eos, MaxNewTokens: 6));
        using var topK1 = GenerateFromFixture(new GenerationOptions(Eos, MaxNewTokens: 6, DoSample: true, TopK: 1, Seed: 1));
        Assert.Equal(TensorComparison.Longs(greedy.Sequences), TensorComparison.Longs(topK1.Sequences));

        using var penalisedGreedy = GenerateFromFixture(new GenerationOptions(Eos, MaxNewTokens: 6, RepetitionPenalty: 1.05));
        using var preset = GenerateFromFixture(GenerationOptions.SpatialMllmEvaluation(Eos, maxNewTokens: 6));
        Assert.Equal(TensorComparison.Longs(penalisedGreedy.Sequences), TensorComparison.Longs(preset.Sequences));
    }

    [Fact]
    public void Generation_stops_on_any_eos_id_and_includes_it()
    {
        using var greedy = GenerateFromFixture(new GenerationOptions(Eos, MaxNewTokens: 6));
        int first = (int)TensorComparison.Longs(greedy.Sequences)[0];
        using var stopped = GenerateFromFixture(new GenerationOptions([12345, first], MaxNewTokens: 6));
        Assert.Equal(new long[] { first }, TensorComparison.Longs(stopped.Sequences));
        Assert.Equal(GenerationStopReason.EndOfSequence, stopped.StopReason);
    }

    [Fact]
    public void Generation_leaves_no_live_tensors_behind()
    {
        using var ids = TinyFixture.Read("input_ids");
        // Warm-up: the decoder caches its rotary frequencies on first use, which is not a leak.
        Generation.Generate(fixture.Lm, ids, new GenerationOptions(Eos, MaxNewTokens: 1)).Dispose();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var result = Generation.Generate(fixture.Lm, ids, new GenerationOptions(Eos, MaxNewTokens: 12, RepetitionPenalty: 1.1, ReturnStepLogits: true)))
            Assert.Equal(12, result.StepLogits.Count);
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_shared_prefix_reproduces_ids_and_every_step_logits_and_stays_intact(bool scripted)
    {
        // The fixture's prompt prefilled up to its last video token once; two generations start from copies of it.
        using var scope = torch.NewDisposeScope();
        var ids = TinyFixture.Read("input_ids");
        var (positions, deltas) = fixture.RopeIndexOfFixture();
        var embeds = fixture.FusedInputsEmbeds(fixture.Lm);
        long length = ids.shape[1];
        long shared = Array.LastIndexOf(TensorComparison.Longs(ids), (long)fixture.Checkpoint.Config.Tokens.VideoTokenId) + 1;
        Assert.InRange(shared, 1, length - 1);
        using var prefix = Prefill(embeds.narrow(1, 0, shared), positions.narrow(2, 0, shared));
        var expectedIds = TensorComparison.Longs(TinyFixture.Read("generated_ids"));
        var expectedLogits = TinyFixture.Read("generated_step_logits");
        if (scripted) fixture.Lm.DecodeMode = DecodeStepMode.Scripted;
        try
        {
            for (int run = 0; run < 2; run++)
            {
                using var result = Generation.GenerateBatch(fixture.Lm, prefix, [(ids[0], positions.select(1, 0), deltas[0].item<long>())],
                    new GenerationOptions(Eos, MaxNewTokens: 6, ReturnStepLogits: true));
                Assert.Equal(expectedIds, TensorComparison.Longs(result.Sequences));
                using var steps = torch.cat(result.StepLogits.ToArray(), 0);
                double error = TensorComparison.MaxError(expectedLogits, steps);
                output.WriteLine($"shared prefix of {shared}/{length} tokens, run {run}: generated_step_logits max error {error:E2}");
                Assert.True(error < 1e-4, $"max error {error}");
            }
        }
        finally { fixture.Lm.DecodeMode = null; }
        Assert.Equal(shared, prefix.Length);
    }

    [Fact]
    public void With_a_shared_prefix_the_repetition_penalty_still_sees_the_prefix_ids()
    {
        // A prefix made of the tokens the model favours after the suffix, so a strong penalty that saw only the suffix
        // would pick a prefix token; over the whole prompt it picks none of the prompt's tokens.
        using var scope = torch.NewDisposeScope();
        long[] suffixIds = [11, 12, 13, 14, 15, 16];
        using var probe = Generation.Generate(fixture.Lm, torch.tensor(Enumerable.Range(100, 16).Select(i => (long)i).Concat(suffixIds).ToArray()).unsqueeze(0),
            new GenerationOptions(Eos, MaxNewTokens: 1, ReturnStepLogits: true));
        var favoured = probe.StepLogits[0][0].index_fill(0, torch.tensor(suffixIds), float.NegativeInfinity).topk(32).indexes;
        long[] prefixIds = TensorComparison.Longs(favoured);
        var ids = torch.tensor(prefixIds.Concat(suffixIds).ToArray()).unsqueeze(0);
        long length = ids.shape[1], shared = prefixIds.Length;
        var positions = torch.arange(length, ScalarType.Int64).view(1, 1, length).expand(3, 1, length);
        var embeds = fixture.Lm.model.EmbedTokens(ids);
        var options = new GenerationOptions(Eos, MaxNewTokens: 4, RepetitionPenalty: 1000, ReturnStepLogits: true);
        using var prefix = Prefill(embeds.narrow(1, 0, shared), positions.narrow(2, 0, shared));
        using var unsharedResult = Generation.Generate(fixture.Lm, ids, options);
        using var sharedResult = Generation.GenerateBatch(fixture.Lm, prefix, [(ids[0], positions.select(1, 0), 0L)], options);
        Assert.Equal(TensorComparison.Longs(unsharedResult.Sequences), TensorComparison.Longs(sharedResult.Sequences));

        var suffixOnly = LogitsProcessing.RepetitionPenalty(sharedResult.StepLogits[0], torch.tensor(suffixIds).unsqueeze(0), 1000).argmax(-1).item<long>();
        Assert.Contains(suffixOnly, prefixIds);
        Assert.DoesNotContain(TensorComparison.Longs(sharedResult.Sequences)[0], prefixIds.Concat(suffixIds));
    }

    [Fact]
    public void Generation_after_a_shared_prefix_leaves_no_live_tensors_behind()
    {
        using var ids = TinyFixture.Read("input_ids");
        long length = ids.shape[1], shared = length / 2;
        using var positions = torch.arange(length, ScalarType.Int64).view(1, 1, length).expand(3, 1, length);
        using var embeds = fixture.Lm.model.EmbedTokens(ids);
        using var prefixEmbeds = embeds.narrow(1, 0, shared);
        using var prefixPositions = positions.narrow(2, 0, shared);
        using var prefix = Prefill(prefixEmbeds, prefixPositions);
        var options = new GenerationOptions(Eos, MaxNewTokens: 12, RepetitionPenalty: 1.1, ReturnStepLogits: true);
        using var row = ids[0];
        using var rowPositions = positions.select(1, 0);
        Generation.GenerateBatch(fixture.Lm, prefix, [(row, rowPositions, 0L)], options).Dispose();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var result = Generation.GenerateBatch(fixture.Lm, prefix, [(row, rowPositions, 0L)], options))
            Assert.Equal(12, result.StepLogits.Count);
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    Qwen2KvCache Prefill(Tensor embeds, Tensor positions)
    {
        var cache = new Qwen2KvCache(fixture.Lm.Config.NumHiddenLayers, embeds.shape[1]);
        using var noGrad = torch.no_grad();
        fixture.Lm.model.forward(embeds, positions, cache).Dispose();
        return cache;
    }

    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_ids()
    {
        using var scope = torch.NewDisposeScope();
        var scores = torch.tensor(new[] { 2.0f, -2.0f, 3.0f, -1.0f, 0.5f }).view(1, -1);
        var seen = torch.tensor(new long[] { 0, 1, 1, 4 }).view(1, -1); // duplicates count once
        var penalised = LogitsProcessing.RepetitionPenalty(scores, seen, 2.0);
        Assert.Equal(new[] { 1.0f, -4.0f, 3.0f, -1.0f, 0.25f }, penalised.data<float>().ToArray());
    }

    [Fact]
    public void Top_p_keeps_the_smallest_head_reaching_p_and_always_the_top_token()
    {
        using var scope = torch.NewDisposeScope();
        // probabilities 0.5, 0.25, 0.125, 0.125
        var scores = torch.tensor(new[] { 0.5f, 0.25f, 0.125f, 0.125f }).log().view(1, -1);
        var kept = LogitsProcessing.TopP(scores, 0.7).isfinite();
        Assert.Equal(new[] { true, true, false, false }, kept.data<bool>().ToArray());
        var onlyTop = LogitsProcessing.TopP(scores, 0.001).isfinite();
        Assert.Equal(new[] { true, false, false, false }, onlyTop.data<bool>().ToArray());
        var topK = LogitsProcessing.TopK(scores, 2).isfinite();
        Assert.Equal(new[] { true, true, false, false }, topK.data<bool>().ToArray());
    }
}
