using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>
/// An answer's step scores (transformers' <c>output_scores</c>: the logits after the logits processors) and raw logits
/// (<c>output_logits</c>), one question at a time and batched, in float32 on the tiny model.
/// </summary>
public sealed class SpatialMllmModelScoresTests(TinyModelFixture fixture, ITestOutputHelper output) : IClassFixture<TinyModelFixture>
{
    static readonly string[] Questions = SpatialMllmModelPrefixSharingTests.Questions;

    SpatialMllmModel Model => fixture.Model;

    /// <summary>Greedy after a strong repetition penalty (the tiny random model's answers differ under it): every score finite.</summary>
    AnswerOptions Greedy(bool scores = true, bool logits = true) =>
        new(Generation: new GenerationOptions(Model.Config.Tokens.EosTokenIds, MaxNewTokens: 8, RepetitionPenalty: 3.0,
            ReturnStepScores: scores, ReturnStepLogits: logits));

    [Fact]
    public void Scores_are_the_logits_after_the_repetition_penalty_and_choose_each_token()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var prompt = Model.PromptIds(features, Questions[0]);
        var answer = Model.Answer(features, Questions[0], Greedy());
        Assert.NotNull(answer.Scores);
        Assert.NotNull(answer.Logits);
        Assert.Equal(answer.GeneratedIds.Count, answer.Scores!.Count);
        Assert.Equal(answer.GeneratedIds.Count, answer.Logits!.Count);
        for (int step = 0; step < answer.GeneratedIds.Count; step++)
        {
            Assert.Equal(Model.Config.Text.VocabSize, answer.Scores[step].Length);
            using var logits = torch.tensor(answer.Logits[step]).unsqueeze(0);
            using var seen = torch.tensor(prompt.Concat(answer.GeneratedIds.Take(step)).Select(i => (long)i).ToArray()).unsqueeze(0);
            using var penalised = LogitsProcessing.RepetitionPenalty(logits, seen, 3.0);
            using var scores = torch.tensor(answer.Scores[step]).unsqueeze(0);
            Assert.True(scores.eq(penalised).all().item<bool>(), $"step {step}: the scores are not the penalised logits");
            Assert.Equal(answer.GeneratedIds[step], scores.argmax(-1).item<long>());
        }
        Assert.False(answer.Scores[0].SequenceEqual(answer.Logits[0]));   // the penalty did change them

        var plain = Model.Answer(features, Questions[0], Greedy(scores: false, logits: false));
        Assert.Null(plain.Scores);
        Assert.Null(plain.Logits);
        Assert.Equal(answer.GeneratedIds, plain.GeneratedIds);
    }

    /// <summary>The evaluation decoding samples at temperature 0.1 after top-k 1: its scores are −∞ but for the one token kept,
    /// whose score is its penalised logit ÷ 0.1, as transformers' warpers leave them.</summary>
    [Fact]
    public void Scores_of_the_evaluation_decoding_are_after_the_warpers()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var generation = GenerationOptions.SpatialMllmEvaluation(Model.Config.Tokens.EosTokenIds, maxNewTokens: 6) with
        {
            RepetitionPenalty = 3.0, ReturnStepScores = true, ReturnStepLogits = true,
        };
        var prompt = Model.PromptIds(features, Questions[1]);
        var answer = Model.Answer(features, Questions[1], new AnswerOptions(Generation: generation));
        for (int step = 0; step < answer.GeneratedIds.Count; step++)
        {
            int token = answer.GeneratedIds[step];
            var finite = answer.Scores![step].Select((s, id) => (s, id)).Where(p => float.IsFinite(p.s)).ToList();
            Assert.Equal([token], finite.Select(p => p.id));
            float logit = answer.Logits![step][token];
            bool seen = prompt.Concat(answer.GeneratedIds.Take(step)).Contains(token);
            float penalised = !seen ? logit : logit < 0 ? (float)(logit * 3.0) : (float)(logit / 3.0);
            Assert.Equal(penalised / 0.1, finite[0].s, 4);
        }
    }

    [Fact]
    public void Each_batched_answer_carries_the_scores_of_answering_alone()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        // The first question twice: two rows with the same prompt; the last question is much shorter than the others.
        string[] questions = [.. Questions, Questions[0]];
        // The second answer's third token made an eos: that row stops early while the others go on.
        int stop = Model.Answer(features, questions[1], Greedy(scores: false, logits: false)).GeneratedIds[2];
        var options = Greedy() with { Generation = Greedy().Generation! with { EosTokenIds = [.. Model.Config.Tokens.EosTokenIds, stop] } };
        var alone = questions.Select(q => Model.Answer(features, q, options)).ToList();
        var batched = Model.AnswerAll(features, questions, options);
        Assert.Contains("batch of", batched[0].Timings[^1].Stage);
        Assert.True(alone.Select(a => a.GeneratedIds.Count).Distinct().Count() > 1, "rows should stop at different steps");
        double worst = 0;
        for (int b = 0; b < questions.Length; b++)
        {
            Assert.Equal(alone[b].GeneratedIds, batched[b].GeneratedIds);
            Assert.Equal(alone[b].GeneratedIds.Count, batched[b].Scores!.Count);   // a row's own steps, not the batch's
            Assert.Equal(alone[b].GeneratedIds.Count, batched[b].Logits!.Count);
            for (int step = 0; step < alone[b].GeneratedIds.Count; step++)
            {
                worst = Math.Max(worst, MaxDifference(alone[b].Scores![step], batched[b].Scores![step]));
                worst = Math.Max(worst, MaxDifference(alone[b].Logits![step], batched[b].Logits![step]));
            }
        }
        output.WriteLine($"batched vs alone: max |Δ| {worst:E2} over {alone.Sum(a => a.GeneratedIds.Count)} steps");
        Assert.True(worst <= 1e-5, $"batched scores differ from answering alone by {worst:E2}");
    }

    static double MaxDifference(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsInfinity(expected[i]) || float.IsInfinity(actual[i])) Assert.Equal(expected[i], actual[i]);
            else worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        }
        return worst;
    }
}
