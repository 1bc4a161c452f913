using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Text;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>
/// Questions about one video sharing the prefilled prompt prefix (system prompt + visual tokens; issue 17) answer token
/// for token as the whole-prompt prefill does, in float32 on the CPU, with the evaluation decoding (the repetition
/// penalty over every prompt id).
/// </summary>
public sealed class SpatialMllmModelPrefixSharingTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    /// <summary>Questions of different lengths and kinds (also the batched-answer tests').</summary>
    internal static readonly string[] Questions =
    [
        "How many chairs are in this room?",
        "What is the distance between the table and the sofa in meters? Answer with a single number.",
        "Which is closer to the door, the bed or the lamp?\nA. bed\nB. lamp\nAnswer with the option's letter from the given choices directly.",
        "Size?",
    ];

    SpatialMllmModel Model => fixture.Model;

    /// <summary>The evaluation decoding with a strong repetition penalty: the tiny random model gives every question the
    /// same answer under 1.05, not under 3.</summary>
    AnswerOptions Options(bool share) => new(Generation: GenerationOptions.SpatialMllmEvaluation(Model.Config.Tokens.EosTokenIds, maxNewTokens: 12) with { RepetitionPenalty = 3.0 },
        SharePrefix: share);

    [Fact]
    public void Shared_and_unshared_prefills_give_the_same_answers_and_close_logits()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var answers = new List<IReadOnlyList<int>>();
        Assert.False(features.HoldsPrefixCache);
        foreach (string question in Questions)
        {
            var ids = PromptIds(features, question);
            var logitOptions = Options(true) with { Generation = Options(true).Generation! with { ReturnStepLogits = true } };
            using var unshared = Model.Generate(ids, features, logitOptions with { SharePrefix = false });
            using var shared = Model.Generate(ids, features, logitOptions);
            Assert.True(features.HoldsPrefixCache);
            Assert.Equal(unshared.Sequences.data<long>().ToArray(), shared.Sequences.data<long>().ToArray());
            Assert.Equal(unshared.StepLogits.Count, shared.StepLogits.Count);
            for (int step = 0; step < shared.StepLogits.Count; step++)
                Assert.True(shared.StepLogits[step].allclose(unshared.StepLogits[step], rtol: 1e-4, atol: 1e-4), $"{question}: step {step} logits differ");
            answers.Add(shared.Sequences.data<long>().Select(i => (int)i).ToArray());

            Assert.Equal(Model.Answer(features, question, Options(false)).GeneratedIds, Model.Answer(features, question, Options(true)).GeneratedIds);
        }
        Assert.True(answers.Distinct(new SequenceComparer()).Count() > 1, "the questions should not all get the same answer: " + string.Join(" | ", answers.Select(a => string.Join(",", a))));
    }

    [Fact]
    public void A_question_does_not_change_the_shared_prefix()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var first = Model.Answer(features, Questions[0], Options(true));
        var other = Model.Answer(features, Questions[2], Options(true));
        var again = Model.Answer(features, Questions[0], Options(true));
        Assert.Equal(first.GeneratedIds, again.GeneratedIds);
        Assert.Equal(Model.Answer(features, Questions[2], Options(false)).GeneratedIds, other.GeneratedIds);
    }

    [Fact]
    public void The_prefix_cache_goes_with_the_features_and_hooks_turn_sharing_off()
    {
        var features = Model.EncodeFrames(fixture.Frames);
        int prefills = 0;
        using (Model.Hooks.Add("model.norm", (_, _) => { prefills++; }))
            Model.Answer(features, Questions[0], Options(true) with { MaxNewTokens = 2, Generation = null });
        Assert.False(features.HoldsPrefixCache);   // a hook sees the whole prompt: no sharing
        Assert.True(prefills > 0);

        Model.Answer(features, Questions[0], Options(true));
        Assert.True(features.HoldsPrefixCache);
        features.Dispose();
        Assert.False(features.HoldsPrefixCache);
    }

    IReadOnlyList<int> PromptIds(VideoFeatures features, string question) => Model.PromptIds(features, question);

    sealed class SequenceComparer : IEqualityComparer<IReadOnlyList<int>>
    {
        public bool Equals(IReadOnlyList<int>? x, IReadOnlyList<int>? y) => x!.SequenceEqual(y!);
        public int GetHashCode(IReadOnlyList<int> obj) => obj.Count;
    }
}
