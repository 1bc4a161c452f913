namespace SpatialMllm.Research.Text;

/// <summary>One item of a message's content, in the order it is rendered.</summary>
public abstract record ChatContent
{
    public static ChatContent FromText(string text) => new TextContent(text);
    public static ChatContent Video { get; } = new VideoContent();
    public static ChatContent Image { get; } = new ImageContent();
}

public sealed record TextContent(string Text) : ChatContent;

/// <summary>Marks where a video goes: rendered as &lt;|vision_start|&gt;&lt;|video_pad|&gt;&lt;|vision_end|&gt;.
/// The frames themselves go to the video processor.</summary>
public sealed record VideoContent : ChatContent;

/// <summary>Marks where an image goes: rendered as &lt;|vision_start|&gt;&lt;|image_pad|&gt;&lt;|vision_end|&gt;.</summary>
public sealed record ImageContent : ChatContent;

/// <summary>A chat message: a role ("system", "user", "assistant") and its content items.</summary>
public sealed record ChatMessage(string Role, IReadOnlyList<ChatContent> Content)
{
    public static ChatMessage System(string text) => new("system", [ChatContent.FromText(text)]);
    public static ChatMessage User(string text) => new("user", [ChatContent.FromText(text)]);
    public static ChatMessage User(params ChatContent[] content) => new("user", content);
    public static ChatMessage Assistant(string text) => new("assistant", [ChatContent.FromText(text)]);
}
