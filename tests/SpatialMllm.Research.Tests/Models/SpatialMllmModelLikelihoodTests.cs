using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>
/// <see cref="SpatialMllmModel.LogLikelihood(VideoFeatures, string, IReadOnlyList{string}, AnswerOptions?)"/>: candidates
/// teacher-forced after the prompt generation uses, scored by the model's raw distribution, in float32 on the tiny model.
/// </summary>
public sealed class SpatialMllmModelLikelihoodTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    const string Question = "Which is closer to the door, the bed or the lamp?\nA. bed\nB. lamp\nAnswer with the option's letter from the given choices directly.";

    SpatialMllmModel Model => fixture.Model;

    /// <summary>Plain greedy over the raw logits (no penalty): each generated token is the model's most likely one.</summary>
    AnswerOptions Greedy(int maxNewTokens = 6) =>
        new(Generation: new GenerationOptions(Model.Config.Tokens.EosTokenIds, MaxNewTokens: maxNewTokens, ReturnStepLogits: true));

    static double LogSoftmaxAt(float[] logits, int token)
    {
        using var t = torch.tensor(logits);
        return t.log_softmax(-1)[token].item<float>();
    }

    [Fact]
    public void The_likelihood_of_the_greedy_answer_is_the_sum_of_its_step_log_probabilities()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var answer = Model.Answer(features, Question, Greedy());
        var expected = answer.GeneratedIds.Select((token, step) => LogSoftmaxAt(answer.Logits![step], token)).ToArray();

        foreach (bool share in new[] { true, false })
        {
            var result = Assert.Single(Model.LogLikelihood(features, Model.PromptIds(features, Question), [answer.GeneratedIds],
                new AnswerOptions(SharePrefix: share)));
            Assert.Null(result.Text);
            Assert.Equal(answer.GeneratedIds, result.TokenIds);
            Assert.Equal(expected.Length, result.TokenCount);
            for (int k = 0; k < expected.Length; k++)
                Assert.True(Math.Abs(expected[k] - result.TokenLogProbs[k]) <= 1e-4, $"share {share}, token {k}: {result.TokenLogProbs[k]} vs {expected[k]}");
            Assert.True(Math.Abs(expected.Sum() - result.LogProb) <= 1e-4, $"share {share}: {result.LogProb} vs {expected.Sum()}");
            Assert.Equal(result.LogProb / result.TokenCount, result.MeanLogProb, 12);
        }
    }

    /// <summary>Multiple choice: the model's most likely first tokens, given as text in a shuffled order, rank as its first-step
    /// logits do, each scored by its log-probability there.</summary>
    [Fact]
    public void Choices_rank_as_the_models_first_step_distribution_does()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var first = Model.Answer(features, Question, Greedy(maxNewTokens: 1)).Logits![0];
        // The most likely tokens that are one printable byte: text that tokenises back to that one token.
        var letters = first.Select((logit, id) => (logit, id)).OrderByDescending(p => p.logit)
            .Select(p => (p.id, Text: Model.Tokenizer.Decode([p.id])))
            .Where(p => p.Text.Length == 1 && char.IsLetterOrDigit(p.Text[0]) && Model.Tokenizer.Encode(p.Text).SequenceEqual([p.id]))
            .Take(4).ToList();
        Assert.Equal(4, letters.Count);
        var shuffled = new[] { letters[2], letters[0], letters[3], letters[1] };

        var results = Model.LogLikelihood(features, Question, shuffled.Select(l => l.Text).ToList());
        Assert.Equal(shuffled.Select(l => l.Text), results.Select(r => r.Text));
        Assert.Equal(letters.Select(l => l.Text), results.OrderByDescending(r => r.LogProb).Select(r => r.Text));
        for (int i = 0; i < shuffled.Length; i++)
        {
            Assert.Equal([shuffled[i].id], results[i].TokenIds);
            Assert.True(Math.Abs(LogSoftmaxAt(first, shuffled[i].id) - results[i].LogProb) <= 1e-4);
        }
    }

    /// <summary>Candidates that follow the greedy answer and differ only in their last token rank as that step's logits do,
    /// the greedy one first; candidates of other lengths in the same batch (padded rows) score as they do alone.</summary>
    [Fact]
    public void Answers_that_part_from_the_greedy_one_rank_below_it_and_batching_changes_nothing()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var answer = Model.Answer(features, Question, Greedy());
        int last = answer.GeneratedIds.Count - 1;
        Assert.True(last >= 1, "the greedy answer should have several tokens");
        var runnersUp = answer.Logits![last].Select((logit, id) => (logit, id)).OrderByDescending(p => p.logit).Skip(1).Take(2).Select(p => p.id);
        IReadOnlyList<int>[] candidates =
        [
            .. runnersUp.Reverse().Select(id => (IReadOnlyList<int>)[.. answer.GeneratedIds.Take(last), id]),
            answer.GeneratedIds,
            answer.GeneratedIds.Take(1).ToArray(),                                        // shorter rows, padded in the batch
            [.. answer.GeneratedIds, .. answer.GeneratedIds],                             // a longer one
        ];
        var prompt = Model.PromptIds(features, Question);
        var batched = Model.LogLikelihood(features, prompt, candidates);
        Assert.Equal([2, 1, 0], batched.Take(3).Select((r, i) => (r.LogProb, i)).OrderByDescending(p => p.LogProb).Select(p => p.i));

        var oneByOne = candidates.Select(c => Model.LogLikelihood(features, prompt, [c], new AnswerOptions(BatchSize: 1))[0]).ToList();
        var whole = Model.LogLikelihood(features, prompt, candidates, new AnswerOptions(SharePrefix: false));
        for (int i = 0; i < candidates.Length; i++)
        {
            Assert.Equal(oneByOne[i].TokenCount, batched[i].TokenCount);
            for (int k = 0; k < batched[i].TokenCount; k++)
            {
                Assert.True(Math.Abs(oneByOne[i].TokenLogProbs[k] - batched[i].TokenLogProbs[k]) <= 1e-5, $"candidate {i} token {k}: batched");
                Assert.True(Math.Abs(whole[i].TokenLogProbs[k] - batched[i].TokenLogProbs[k]) <= 1e-4, $"candidate {i} token {k}: whole prompt");
            }
        }
    }

    [Fact]
    public void A_hook_sees_the_whole_prompt_and_the_candidate_and_changes_the_likelihood()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var prompt = Model.PromptIds(features, Question);
        var plain = Model.LogLikelihood(features, Question, ["A", "B"]);
        long seen = 0;
        IReadOnlyList<AnswerLikelihood> hooked;
        using (Model.Hooks.Add("model.layers.0", (_, t) => { seen = t.shape[1]; return t * 0.5; }))
            hooked = Model.LogLikelihood(features, Question, ["A", "B"]);
        Assert.Equal(prompt.Length + 1, seen);
        Assert.NotEqual(plain[0].LogProb, hooked[0].LogProb);
        using (Model.Hooks.Add("model.layers.0", (_, _) => null))
            Assert.Equal(plain.Select(r => r.LogProb), Model.LogLikelihood(features, Question, ["A", "B"]).Select(r => r.LogProb),
                new ToleranceComparer(1e-4));
    }

    [Fact]
    public void Bad_candidates_are_clear_errors()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        Assert.Contains("Candidate 1 has no tokens", Assert.Throws<ArgumentException>(() => Model.LogLikelihood(features, Question, ["A", ""])).Message);
        var prompt = Model.PromptIds(features, Question);
        Assert.Contains("candidate 0[1] = 5000 is not a token id",
            Assert.Throws<ArgumentException>(() => Model.LogLikelihood(features, prompt, [[1, 5000]])).Message);
        Assert.Empty(Model.LogLikelihood(features, Question, []));
    }

    sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }
}
