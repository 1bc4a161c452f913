namespace SpatialMllm.Research.Text;

/// <summary>The Qwen2.5-VL special tokens the chat format and the vision inputs use (spec §2.5).
/// Ids come from the tokenizer files or the model config, never from here.</summary>
public static class QwenSpecialTokens
{
    public const string EndOfText = "<|endoftext|>";
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";
    public const string VisionStart = "<|vision_start|>";
    public const string VisionEnd = "<|vision_end|>";
    public const string ImagePad = "<|image_pad|>";
    public const string VideoPad = "<|video_pad|>";
}
