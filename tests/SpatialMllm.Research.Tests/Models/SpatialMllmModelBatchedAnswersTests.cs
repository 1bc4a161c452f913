using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>
/// A video's questions answered as one batch (<see cref="SpatialMllmModel.AnswerAll"/>; issue 17): the shared prefix
/// repeated per row, questions of different lengths right-aligned with the gap hidden, rows decoded together and stopping
/// at their own eos. In float32 on the CPU they answer token for token as one question at a time with the whole prompt
/// prefilled, with the evaluation decoding (repetition penalty over every prompt id).
/// </summary>
public sealed class SpatialMllmModelBatchedAnswersTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    /// <summary>The prefix-sharing tests' questions, the first twice (two rows with the same prompt).</summary>
    static readonly string[] Questions = [.. SpatialMllmModelPrefixSharingTests.Questions, SpatialMllmModelPrefixSharingTests.Questions[0]];

    SpatialMllmModel Model => fixture.Model;

    /// <summary>A strong repetition penalty: under 1.05 the tiny random model gives every question the same answer.</summary>
    AnswerOptions Options(int batchSize = 32, IReadOnlyList<int>? eos = null) =>
        new(Generation: GenerationOptions.SpatialMllmEvaluation(eos ?? Model.Config.Tokens.EosTokenIds, maxNewTokens: 12) with { RepetitionPenalty = 3.0 },
            BatchSize: batchSize);

    IReadOnlyList<IReadOnlyList<int>> OneAtATime(VideoFeatures features, AnswerOptions options) =>
        [.. Questions.Select(q => Model.Answer(features, q, options with { SharePrefix = false }).GeneratedIds)];

    [Fact]
    public void A_batch_answers_as_one_question_at_a_time_does()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var expected = OneAtATime(features, Options());
        var batched = Model.AnswerAll(features, Questions, Options());
        Assert.Equal(expected.Count, batched.Count);
        for (int i = 0; i < Questions.Length; i++)
        {
            Assert.Equal(expected[i], batched[i].GeneratedIds);
            Assert.Equal(Model.Tokenizer.Decode(expected[i], skipSpecialTokens: true), batched[i].Text);
            Assert.Equal(Model.PromptIds(features, Questions[i]).Length, batched[i].PromptTokens);
        }
        Assert.True(expected.Select(a => string.Join(",", a)).Distinct().Count() > 2, "the questions should get different answers");
        Assert.Contains("batch of 5", batched[0].Timings[^1].Stage);
    }

    /// <summary>The decode fast path (one TorchScript call a step; captured as a CUDA graph on a GPU) hides each row's gap
    /// through the cache's key mask as the eager steps do.</summary>
    [Fact]
    public void The_scripted_decode_step_answers_batches_as_the_eager_one_does()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var expected = OneAtATime(features, Options());
        Model.Language.DecodeMode = DecodeStepMode.Scripted;
        try { Assert.Equal(expected, Model.AnswerAll(features, Questions, Options()).Select(a => a.GeneratedIds).ToList()); }
        finally { Model.Language.DecodeMode = null; }
    }

    /// <summary>Padding rows are finished from the start and fed a token each step: with an eos of −1 ("never stop", as
    /// benchmarks of random weights use), the pad id is no token and must not reach the embedding (on CUDA an
    /// out-of-range lookup is a device-side assert that poisons the process).</summary>
    [Fact]
    public void Padding_rows_with_a_sentinel_eos_answer_as_unpadded_rows()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var prompts = Questions.Select(q => Model.PromptIds(features, q)).ToList();
        int shared = Model.SharedPrefixLength(prompts[0]);
        var neverStop = new GenerationOptions([-1], MaxNewTokens: 5);
        using var plain = Model.GenerateBatch(prompts, shared, features, neverStop);
        using var padded = Model.GenerateBatch(prompts, shared, features, neverStop, padRowsTo: 8);
        Assert.Equal([Questions.Length, 5], padded.Sequences.shape);
        Assert.Equal(plain.Sequences.data<long>().ToArray(), padded.Sequences.data<long>().ToArray());
    }

    [Fact]
    public void Batches_of_any_size_give_the_same_answers()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var expected = OneAtATime(features, Options());
        foreach (int size in new[] { 1, 2, 3 })
            Assert.Equal(expected, Model.AnswerAll(features, Questions, Options(size)).Select(a => a.GeneratedIds).ToList());
        Assert.Throws<ArgumentOutOfRangeException>(() => Model.AnswerAll(features, Questions, Options(0)));
    }

    [Fact]
    public void Each_row_stops_at_its_own_eos()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        // Make the third token of the second question's answer an end-of-sequence id: that row stops there, the others go on.
        var free = OneAtATime(features, Options());
        int stop = free[1][2];
        var options = Options(eos: [.. Model.Config.Tokens.EosTokenIds, stop]);
        var expected = OneAtATime(features, options);
        Assert.Equal(3, expected[1].Count);
        Assert.Contains(expected, a => a.Count == 12);
        var batched = Model.AnswerAll(features, Questions, options);
        Assert.Equal(expected, batched.Select(a => a.GeneratedIds).ToList());
        Assert.Equal(GenerationStopReason.EndOfSequence, batched[1].StopReason);
        Assert.Equal(GenerationStopReason.MaxNewTokens, batched.First(a => a.GeneratedIds.Count == 12 && !options.Generation!.EosTokenIds.Contains(a.GeneratedIds[^1])).StopReason);
    }

    [Fact]
    public void Batched_step_logits_are_those_of_the_whole_prompt()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var generation = Options().Generation! with { ReturnStepLogits = true };
        var prompts = Questions.Select(q => Model.PromptIds(features, q)).ToList();
        int shared = Model.SharedPrefixLength(prompts[0]);
        Assert.True(prompts.Select(p => p.Length).Distinct().Count() > 2, "the prompts should differ in length");
        using var batched = Model.GenerateBatch(prompts, shared, features, generation);
        using var padded = Model.GenerateBatch(prompts, shared, features, generation, padRowsTo: 8);   // as under a CUDA graph
        Assert.Equal(batched.Sequences.data<long>().ToArray(), padded.Sequences.data<long>().ToArray());
        Assert.Equal(batched.StepLogits.Count, padded.StepLogits.Count);
        Assert.True(padded.StepLogits.Zip(batched.StepLogits).All(p => p.First.allclose(p.Second, rtol: 1e-5, atol: 1e-5)));
        for (int b = 0; b < prompts.Count; b++)
        {
            using var single = Model.Generate(prompts[b], features, new AnswerOptions(Generation: generation, SharePrefix: false));
            Assert.Equal(single.Sequences[0].data<long>().ToArray(), batched.Sequences[b].narrow(0, 0, single.Sequences.shape[1]).data<long>().ToArray());
            for (int step = 0; step < single.StepLogits.Count; step++)
                Assert.True(batched.StepLogits[step][b].allclose(single.StepLogits[step][0], rtol: 1e-4, atol: 1e-4),
                    $"question {b}, step {step}: max difference {(batched.StepLogits[step][b] - single.StepLogits[step][0]).abs().max().item<float>()}");
        }
    }
}
