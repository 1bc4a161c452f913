using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Text;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>Generation from your own chat messages or prompt ids (<see cref="SpatialMllmModel.Generate(VideoFeatures, IReadOnlyList{ChatMessage}, AnswerOptions?)"/>).</summary>
public sealed class SpatialMllmModelPromptTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    const string Question = "How many chairs are in this room?";

    SpatialMllmModel Model => fixture.Model;

    AnswerOptions Options => new(Generation: GenerationOptions.SpatialMllmEvaluation(Model.Config.Tokens.EosTokenIds, maxNewTokens: 8) with
    {
        RepetitionPenalty = 3.0, ReturnStepScores = true,
    });

    static void AssertSameAnswer(Answer expected, Answer actual)
    {
        Assert.Equal(expected.GeneratedIds, actual.GeneratedIds);
        Assert.Equal(expected.Text, actual.Text);
        Assert.Equal(expected.PromptTokens, actual.PromptTokens);
        Assert.Equal(expected.VideoTokens, actual.VideoTokens);
        Assert.Equal(expected.StopReason, actual.StopReason);
        Assert.Equal(expected.Scores!.Count, actual.Scores!.Count);
        for (int step = 0; step < expected.Scores.Count; step++) Assert.Equal(expected.Scores[step], actual.Scores[step]);
    }

    [Fact]
    public void The_default_prompts_messages_and_ids_generate_the_answer_exactly()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var expected = Model.Answer(features, Question, Options);

        AssertSameAnswer(expected, Model.Generate(features, [ChatMessage.User(ChatContent.Video, ChatContent.FromText(Question))], Options));
        var ids = Model.PromptIds(features, Question);
        Assert.Equal(features.TokenCount, ids.Count(id => id == Model.Config.Tokens.VideoTokenId));
        AssertSameAnswer(expected, Model.Generate(features, ids, Options));
        // The template's ids with their one video pad, expanded by Generate.
        var unexpanded = Model.Tokenizer.Encode(ChatTemplate.Render([ChatMessage.User(ChatContent.Video, ChatContent.FromText(Question))]));
        Assert.Equal(1, unexpanded.Count(id => id == Model.Config.Tokens.VideoTokenId));
        AssertSameAnswer(expected, Model.Generate(features, unexpanded, Options));
        Assert.Equal(expected.GeneratedIds, Model.Generate(features, ids, Options with { SharePrefix = false }).GeneratedIds);
    }

    [Fact]
    public void A_chat_of_your_own_is_what_the_model_reads()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        ChatMessage[] chat =
        [
            ChatMessage.System("Answer in one word."),
            ChatMessage.User(ChatContent.FromText("Look: "), ChatContent.Video),
            ChatMessage.Assistant("I see a room."),
            ChatMessage.User(Question),
        ];
        var ids = Model.PromptIds(features, chat);
        string prompt = Model.Tokenizer.Decode(ids.Where(id => id != Model.Config.Tokens.VideoTokenId));
        Assert.Equal(
            "<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\nLook: <|vision_start|><|vision_end|><|im_end|>\n" +
            "<|im_start|>assistant\nI see a room.<|im_end|>\n<|im_start|>user\n" + Question + "<|im_end|>\n<|im_start|>assistant\n", prompt);
        var answer = Model.Generate(features, chat, Options);
        Assert.Equal(ids.Length, answer.PromptTokens);
        AssertSameAnswer(answer, Model.Generate(features, ids, Options));
        Assert.NotEqual(Model.Answer(features, Question, Options).Scores![0], answer.Scores![0]);
    }

    [Fact]
    public void A_prompt_that_does_not_place_the_video_is_a_clear_error()
    {
        using var features = Model.EncodeFrames(fixture.Frames);
        var tokens = Model.Config.Tokens;
        var ids = Model.PromptIds(features, Question);
        int start = Array.IndexOf(ids, tokens.VisionStartTokenId);

        string Error(IReadOnlyList<int> prompt) => Assert.Throws<ArgumentException>(() => Model.Generate(features, prompt, Options)).Message;
        Assert.Contains("no <|video_pad|>", Error([.. ids.Where(id => id != tokens.VideoTokenId)]));
        Assert.Contains("no <|vision_start|> directly before", Error([.. ids.Where((_, i) => i != start)]));
        Assert.Contains($"hold {features.TokenCount - 1} <|video_pad|>", Error([.. ids.Where((_, i) => i != start + 1)]));
        Assert.Contains("not in one run", Error([.. ids.Take(start + 2), 65, .. ids.Skip(start + 2)]));
        Assert.Contains("<|image_pad|>", Error([.. ids, tokens.ImageTokenId]));
        Assert.Contains($"promptIds[{ids.Length}] = {Model.Config.Text.VocabSize} is not a token id", Error([.. ids, Model.Config.Text.VocabSize]));

        var twoVideos = Assert.Throws<ArgumentException>(() => Model.Generate(features, [ChatMessage.User(ChatContent.Video, ChatContent.Video)], Options));
        Assert.Contains("2 video items", twoVideos.Message);
        Assert.Contains("0 video items", Assert.Throws<ArgumentException>(() => Model.Generate(features, [ChatMessage.User(Question)], Options)).Message);
        Assert.Contains("image", Assert.Throws<ArgumentException>(() =>
            Model.Generate(features, [ChatMessage.User(ChatContent.Video, ChatContent.Image)], Options)).Message);
    }
}
