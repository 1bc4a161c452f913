using System.Globalization;
using System.Text;
using System.Text.Json;
using SpatialMllm.Research.Processing;

namespace SpatialMllm.Research.Text;

/// <summary>
/// Qwen2.5-VL's chat template, written out by hand (no Jinja engine), and the expansion of the one
/// &lt;|video_pad|&gt; / &lt;|image_pad|&gt; per item into as many ids as the item has merged tokens.
/// </summary>
public static class ChatTemplate
{
    /// <summary>The Jinja source <see cref="Render"/> implements, verbatim from Qwen2.5-VL's chat_template.json.
    /// A model folder whose template differs is refused by <see cref="EnsureSupported"/>.</summary>
    public const string QwenJinja =
        "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}" +
        "{% for message in messages %}" +
        "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
        "{% endif %}<|im_start|>{{ message['role'] }}\n" +
        "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}" +
        "{% for content in message['content'] %}" +
        "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}" +
        "{% set image_count.value = image_count.value + 1 %}" +
        "{% if add_vision_id %}Picture {{ image_count.value }}: " +
        "{% endif %}<|vision_start|><|image_pad|><|vision_end|>" +
        "{% elif content['type'] == 'video' or 'video' in content %}" +
        "{% set video_count.value = video_count.value + 1 %}" +
        "{% if add_vision_id %}Video {{ video_count.value }}: " +
        "{% endif %}<|vision_start|><|video_pad|><|vision_end|>" +
        "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}" +
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    public const string DefaultSystemPrompt = "You are a helpful assistant.";

    /// <summary>Renders <paramref name="messages"/> as the Jinja template does.</summary>
    /// <param name="addGenerationPrompt">End with "&lt;|im_start|&gt;assistant\n" for the model to continue.</param>
    /// <param name="addVisionId">Prefix each image/video with "Picture n: " / "Video n: " (counted over the whole chat).</param>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool addVisionId = false)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var sb = new StringBuilder();
        int imageCount = 0, videoCount = 0;
        for (int i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if (string.IsNullOrEmpty(message.Role))
                throw new ArgumentException($"Message {i} has no role.", nameof(messages));
            if (i == 0 && message.Role != "system")
                sb.Append(QwenSpecialTokens.ImStart).Append("system\n").Append(DefaultSystemPrompt).Append(QwenSpecialTokens.ImEnd).Append('\n');
            sb.Append(QwenSpecialTokens.ImStart).Append(message.Role).Append('\n');
            foreach (var item in message.Content)
            {
                switch (item)
                {
                    case ImageContent:
                        imageCount++;
                        if (addVisionId) sb.Append("Picture ").Append(imageCount.ToString(CultureInfo.InvariantCulture)).Append(": ");
                        sb.Append(QwenSpecialTokens.VisionStart).Append(QwenSpecialTokens.ImagePad).Append(QwenSpecialTokens.VisionEnd);
                        break;
                    case VideoContent:
                        videoCount++;
                        if (addVisionId) sb.Append("Video ").Append(videoCount.ToString(CultureInfo.InvariantCulture)).Append(": ");
                        sb.Append(QwenSpecialTokens.VisionStart).Append(QwenSpecialTokens.VideoPad).Append(QwenSpecialTokens.VisionEnd);
                        break;
                    case TextContent text:
                        sb.Append(text.Text);
                        break;
                    default:
                        throw new ArgumentException($"Message {i} has a content item of unknown type {item?.GetType().Name ?? "null"}.", nameof(messages));
                }
            }
            sb.Append(QwenSpecialTokens.ImEnd).Append('\n');
        }
        if (addGenerationPrompt) sb.Append(QwenSpecialTokens.ImStart).Append("assistant\n");
        return sb.ToString();
    }

    /// <summary>Throws unless the model folder's chat_template.json (if any) holds exactly <see cref="QwenJinja"/>,
    /// so that a checkpoint with another template is not silently rendered with this one.</summary>
    public static void EnsureSupported(string modelFolder)
    {
        string path = Path.Combine(modelFolder, "chat_template.json");
        if (!File.Exists(path)) return;
        string? template;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            template = doc.RootElement.GetProperty("chat_template").GetString();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: expected {{\"chat_template\": \"…\"}} ({e.Message}).", e);
        }
        if (template != QwenJinja)
            throw new NotSupportedException($"{path} holds a chat template other than Qwen2.5-VL's; {nameof(Render)} implements only that one.");
    }

    /// <summary>
    /// Replaces the k-th <paramref name="padId"/> in <paramref name="ids"/> by <c>tokenCounts[k]</c> copies of it,
    /// as Qwen2.5-VL's processor does for &lt;|video_pad|&gt; and &lt;|image_pad|&gt;.
    /// </summary>
    /// <exception cref="ArgumentException">The number of pads differs from the number of counts.</exception>
    public static int[] ExpandPads(IReadOnlyList<int> ids, int padId, IReadOnlyList<int> tokenCounts)
    {
        int pads = ids.Count(id => id == padId);
        if (pads != tokenCounts.Count)
            throw new ArgumentException($"The ids hold {pads} pad token(s) {padId} but {tokenCounts.Count} vision item(s) were given.");
        var expanded = new List<int>(ids.Count + tokenCounts.Sum());
        int item = 0;
        foreach (int id in ids)
        {
            if (id != padId) { expanded.Add(id); continue; }
            int count = tokenCounts[item++];
            if (count <= 0) throw new ArgumentException($"Vision item {item - 1} has {count} tokens.");
            for (int j = 0; j < count; j++) expanded.Add(padId);
        }
        return expanded.ToArray();
    }

    /// <summary><see cref="ExpandPads(IReadOnlyList{int}, int, IReadOnlyList{int})"/> with each item's count
    /// taken from its grid: grid_t·grid_h·grid_w / merge².</summary>
    public static int[] ExpandPads(IReadOnlyList<int> ids, int padId, IReadOnlyList<GridThw> grids, int mergeSize) =>
        ExpandPads(ids, padId, grids.Select(g => g.MergedTokenCount(mergeSize)).ToArray());
}
