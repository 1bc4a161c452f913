using System.Text.Json;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Text;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Text;

public class ChatTemplateTests
{
    static readonly string ModelFolder = Path.Combine(TestPaths.Data, "qwen2.5-vl-3b");

    const string Question = "How many chairs are in this room?\nPlease answer the question using a single word or phrase.";

    [Fact]
    public void Renderer_implements_the_shipped_chat_template_json()
    {
        // If Qwen's template changes, this fails: re-check Render against the new Jinja before updating QwenJinja.
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(ModelFolder, "chat_template.json")));
        Assert.Equal(ChatTemplate.QwenJinja, doc.RootElement.GetProperty("chat_template").GetString());
        ChatTemplate.EnsureSupported(ModelFolder);
    }

    [Fact]
    public void A_different_template_is_refused()
    {
        string dir = TestPaths.NewTempDir("chat-template");
        File.WriteAllText(Path.Combine(dir, "chat_template.json"), JsonSerializer.Serialize(new { chat_template = ChatTemplate.QwenJinja + " " }));
        Assert.Throws<NotSupportedException>(() => ChatTemplate.EnsureSupported(dir));
        File.WriteAllText(Path.Combine(dir, "chat_template.json"), "{\"template\": 1}");
        Assert.Contains("chat_template.json", Assert.Throws<InvalidDataException>(() => ChatTemplate.EnsureSupported(dir)).Message);
    }

    [Fact]
    public void Vsibench_prompt_is_byte_identical_to_spec_2_4()
    {
        string prompt = ChatTemplate.Render([ChatMessage.User(ChatContent.Video, ChatContent.FromText(Question))]);
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" +
            "<|vision_start|><|video_pad|><|vision_end|>" + Question + "<|im_end|>\n<|im_start|>assistant\n",
            prompt);
    }

    [Fact]
    public void Explicit_system_message_replaces_the_default()
    {
        string prompt = ChatTemplate.Render([ChatMessage.System("Be brief."), ChatMessage.User("Hi")], addGenerationPrompt: false);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n", prompt);
    }

    [Fact]
    public void Multi_turn_with_images_videos_and_vision_ids()
    {
        var messages = new[]
        {
            ChatMessage.User(ChatContent.Image, ChatContent.FromText("What is this?")),
            ChatMessage.Assistant("A chair."),
            ChatMessage.User(ChatContent.Video, ChatContent.Image, ChatContent.FromText("And these?")),
        };
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
            "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n" +
            "<|im_start|>assistant\nA chair.<|im_end|>\n" +
            "<|im_start|>user\nVideo 1: <|vision_start|><|video_pad|><|vision_end|>Picture 2: <|vision_start|><|image_pad|><|vision_end|>And these?<|im_end|>\n" +
            "<|im_start|>assistant\n",
            ChatTemplate.Render(messages, addVisionId: true));
        Assert.DoesNotContain("Picture", ChatTemplate.Render(messages));
    }

    [Fact]
    public void Empty_chat_renders_only_the_generation_prompt()
    {
        Assert.Equal("<|im_start|>assistant\n", ChatTemplate.Render([]));
        Assert.Equal("", ChatTemplate.Render([], addGenerationPrompt: false));
    }

    [Fact]
    public void Pad_expansion_reproduces_the_fixture_input_ids()
    {
        using var scope = NewDisposeScope();
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.TinyFixture, "config.json"))).RootElement;
        int videoPad = config.GetProperty("video_token_id").GetInt32();
        int visionStart = config.GetProperty("vision_start_token_id").GetInt32();
        int visionEnd = config.GetProperty("vision_end_token_id").GetInt32();

        int[] expected = TinyFixture.Read("input_ids").data<long>().Select(v => (int)v).ToArray();
        // The rendered prompt holds one pad between vision_start and vision_end.
        var collapsed = expected.Where((id, i) => id != videoPad || expected[i - 1] != videoPad).ToArray();
        Assert.Equal([visionStart, videoPad, visionEnd], collapsed.SkipWhile(id => id != visionStart).Take(3));

        var grid = new GridThw(2, 6, 8);
        Assert.Equal(expected, ChatTemplate.ExpandPads(collapsed, videoPad, [grid], mergeSize: 2));
        Assert.Equal(24, expected.Count(id => id == videoPad));
    }

    [Fact]
    public void Pad_expansion_needs_one_count_per_pad()
    {
        var e = Assert.Throws<ArgumentException>(() => ChatTemplate.ExpandPads([1, 7, 2, 7], 7, [3]));
        Assert.Contains("2 pad token(s)", e.Message);
        Assert.Equal([1, 7, 7, 2, 7, 7, 7], ChatTemplate.ExpandPads([1, 7, 2, 7], 7, [2, 3]));
    }

    [Fact]
    public void Vsibench_prompt_to_ids_for_16_frames_of_640x480()
    {
        var tokenizer = Qwen2Tokenizer.FromFolder(ModelFolder);
        string prompt = ChatTemplate.Render([ChatMessage.User(ChatContent.Video, ChatContent.FromText(Question))]);
        var ids = ChatTemplate.ExpandPads(tokenizer.Encode(prompt), tokenizer.SpecialTokenId(QwenSpecialTokens.VideoPad),
            [new GridThw(8, 34, 46)], mergeSize: 2);

        Assert.Equal(3128, ids.Count(id => id == 151656));
        Assert.Equal(14, Array.IndexOf(ids, 151652));       // 15-token prefix of spec §2.6, vision_start last
        Assert.Equal(14 + 3128 + 1, Array.IndexOf(ids, 151653));
        Assert.Equal([151645, 198, 151644, 77091, 198], ids[^5..]); // <|im_end|>\n<|im_start|>assistant\n
        Assert.Equal(prompt.Replace("<|video_pad|>", string.Concat(Enumerable.Repeat("<|video_pad|>", 3128))), tokenizer.Decode(ids));
    }
}
