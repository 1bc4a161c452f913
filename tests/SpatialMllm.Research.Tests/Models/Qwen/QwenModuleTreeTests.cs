using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Qwen;

public class QwenModuleTreeTests
{
    /// <summary>Qwen2.5-VL-3B's sizes: every field missing from this config takes the released checkpoint's value.</summary>
    static SpatialMllmConfig FullSize() =>
        SpatialMllmConfig.Parse(System.Text.Json.JsonDocument.Parse("""{"vision_config": {}}""").RootElement);

    [Fact]
    public void Full_size_towers_build_on_the_meta_device_with_checkpoint_keys_and_shapes()
    {
        var config = FullSize();
        long peakBefore = PeakResidentBytes();
        using var vision = new Qwen2VisionTransformer(config.Vision, torch.META);
        using var lm = new Qwen2CausalLm(config.Text, torch.META, ScalarType.BFloat16);
        var visual = vision.state_dict().ToDictionary(kv => "visual." + kv.Key, kv => kv.Value);
        var language = lm.StateDictWithoutTiedCopies().ToDictionary();

        Assert.Equal(1 + 32 * 12 + 5, visual.Count);
        Assert.Equal(1 + 36 * 12 + 1, language.Count);
        Assert.All(visual.Values.Concat(language.Values), t => Assert.Equal(DeviceType.META, t.device_type));
        Assert.Equal(new long[] { 1280, 3, 2, 14, 14 }, visual["visual.patch_embed.proj.weight"].shape);
        Assert.Equal(new long[] { 3840, 1280 }, visual["visual.blocks.31.attn.qkv.weight"].shape);
        Assert.Equal(new long[] { 3420, 1280 }, visual["visual.blocks.0.mlp.gate_proj.weight"].shape);
        Assert.Equal(new long[] { 5120, 5120 }, visual["visual.merger.mlp.0.weight"].shape);
        Assert.Equal(new long[] { 2048, 5120 }, visual["visual.merger.mlp.2.weight"].shape);
        Assert.Equal(new long[] { 151936, 2048 }, language["model.embed_tokens.weight"].shape);
        Assert.Equal(new long[] { 256, 2048 }, language["model.layers.35.self_attn.k_proj.weight"].shape);
        Assert.Equal(new long[] { 256 }, language["model.layers.35.self_attn.v_proj.bias"].shape);
        Assert.False(language.ContainsKey("model.layers.0.self_attn.o_proj.bias"));
        Assert.Equal(new long[] { 11008, 2048 }, language["model.layers.0.mlp.up_proj.weight"].shape);
        Assert.Equal(ScalarType.BFloat16, language["model.norm.weight"].dtype);
        // Tied, as transformers: lm_head is a Linear whose weight is the embedding's Parameter, absent from checkpoints.
        Assert.False(language.ContainsKey("lm_head.weight"));
        Assert.Same(lm.model.embed_tokens.weight, lm.lm_head.weight);
        Assert.Equal(lm.state_dict()["lm_head.weight"].Handle, lm.state_dict()["model.embed_tokens.weight"].Handle);
        // Real tensors would take 7.5 GB (bf16) to 15 GB; a CPU detour of the 151936×2048 table alone is 1.2 GB.
        Assert.True(PeakResidentBytes() - peakBefore < 400L << 20, "building on the meta device allocated host memory");
    }

    /// <summary>The process's peak resident set (VmHWM), in bytes.</summary>
    static long PeakResidentBytes()
    {
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:"));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }

    [Fact]
    public void An_untied_head_has_its_own_key()
    {
        var text = FullSize().Text with { TieWordEmbeddings = false };
        using var lm = new Qwen2CausalLm(text, torch.META);
        Assert.Equal(new long[] { 151936, 2048 }, lm.state_dict()["lm_head.weight"].shape);
    }
}
