using System.Text.Json;

namespace SpatialMllm.Research.Configs;

/// <summary>The Qwen2.5 language model (transformers 4.51 keeps these at the top level of config.json).</summary>
public sealed record Qwen2TextConfig(
    int VocabSize, int HiddenSize, int IntermediateSize, int NumHiddenLayers, int NumAttentionHeads,
    int NumKeyValueHeads, double RmsNormEps, double RopeTheta, IReadOnlyList<int> MropeSection,
    int MaxPositionEmbeddings, bool TieWordEmbeddings, string HiddenAct)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;
}

/// <summary>Token ids the multimodal model needs (read from the config; never hard-coded).</summary>
public sealed record SpecialTokenIds(
    int BosTokenId, IReadOnlyList<int> EosTokenIds, int VisionStartTokenId, int VisionEndTokenId,
    int VisionTokenId, int ImageTokenId, int VideoTokenId);

/// <summary>The Qwen2.5-VL vision tower (<c>vision_config</c>).</summary>
public sealed record Qwen2VisionConfig(
    int Depth, int HiddenSize, int IntermediateSize, int NumHeads, int InChannels, int OutHiddenSize,
    int PatchSize, int SpatialMergeSize, int TemporalPatchSize, int WindowSize,
    IReadOnlyList<int> FullAttentionBlockIndexes, int TokensPerSecond, string HiddenAct)
{
    public int HeadDim => HiddenSize / NumHeads;
}

/// <summary>DINOv2 patch embed inside the VGGT aggregator (ViT-L/14 with 4 registers in VGGT-1B).</summary>
public sealed record DinoPatchEmbedConfig(int EmbedDim, int Depth, int NumHeads, double MlpRatio, double InitValues);

public sealed record CameraHeadConfig(int TrunkDepth, int NumHeads);

public sealed record DptHeadConfig(int Features, IReadOnlyList<int> OutChannels, IReadOnlyList<int> IntermediateLayerIdx);

/// <summary>The VGGT spatial encoder (<c>spatial_config</c>); absent sizes default to VGGT-1B's.</summary>
public sealed record SpatialEncoderConfig(
    int ImgSize, int PatchSize, int EmbedDim, int Depth, int NumHeads, int NumRegisterTokens, double MlpRatio,
    DinoPatchEmbedConfig PatchEmbed, CameraHeadConfig CameraHead, DptHeadConfig DptHead)
{
    public int HeadDim => EmbedDim / NumHeads;

    /// <summary>VGGT-1B as <c>VGGT(img_size=518, patch_size=14, embed_dim=1024)</c> builds it.</summary>
    public static SpatialEncoderConfig Vggt1B { get; } = new(
        518, 14, 1024, 24, 16, 4, 4.0,
        new DinoPatchEmbedConfig(1024, 24, 16, 4.0, 1.0),
        new CameraHeadConfig(4, 16),
        new DptHeadConfig(256, [256, 512, 1024, 1024], [4, 11, 17, 23]));
}

/// <summary><c>connector_config</c>: the connector type and the VGGT layer it reads; the rest are the reference's
/// <c>cross_attn</c> settings (<c>num_heads</c>, <c>mlp_ratio</c>, <c>hidden_act</c>, <c>bias</c>, with its defaults).</summary>
public sealed record ConnectorConfig(string ConnectorType, int SpatialEmbedsLayerIdx, int NumHeads = 8, double MlpRatio = 4,
    string HiddenAct = "gelu", bool Bias = false);

/// <summary>
/// A Spatial-MLLM or plain Qwen2.5-VL <c>config.json</c>. <see cref="Spatial"/> and <see cref="Connector"/> are
/// null for a plain Qwen2.5-VL checkpoint. Unknown fields are ignored; missing ones take the reference defaults.
/// </summary>
public sealed record SpatialMllmConfig(
    string ModelType, Qwen2TextConfig Text, Qwen2VisionConfig Vision, SpecialTokenIds Tokens,
    SpatialEncoderConfig? Spatial, ConnectorConfig? Connector)
{
    public bool IsSpatialMllm => Spatial != null && Connector != null;

    /// <summary>Qwen2.5-VL-3B's defaults with no spatial encoder (what an empty config.json means).</summary>
    internal static SpatialMllmConfig Default { get; } = Parse(JsonDocument.Parse("""{"vision_config":{}}""").RootElement);

    /// <summary>
    /// A config.json's root object (transformers 4.51 or later layouts). Throws InvalidOperationException,
    /// FormatException or KeyNotFoundException on values of the wrong kind; <c>Checkpoints.ConfigFile.Load</c> reads a
    /// file and names it in the error.
    /// </summary>
    internal static SpatialMllmConfig Parse(JsonElement root)
    {
        // transformers >= 4.52 nests the language model under text_config; 4.51 (the checkpoints) keeps it on top.
        var text = root.TryGetProperty("text_config", out var nested) && nested.ValueKind == JsonValueKind.Object ? nested : root;
        var ropeScaling = text.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object ? rs
            : root.TryGetProperty("rope_scaling", out var rs2) && rs2.ValueKind == JsonValueKind.Object ? rs2 : default;

        var textConfig = new Qwen2TextConfig(
            Int(text, "vocab_size", 151936), Int(text, "hidden_size", 2048), Int(text, "intermediate_size", 11008),
            Int(text, "num_hidden_layers", 36), Int(text, "num_attention_heads", 16), Int(text, "num_key_value_heads", 2),
            Double(text, "rms_norm_eps", 1e-6), Double(text, "rope_theta", 1_000_000.0),
            ropeScaling.ValueKind == JsonValueKind.Object ? Ints(ropeScaling, "mrope_section", [16, 24, 24]) : [16, 24, 24],
            Int(text, "max_position_embeddings", 128000),
            Bool(root, "tie_word_embeddings", Bool(text, "tie_word_embeddings", true)),
            String(text, "hidden_act", "silu"));

        var eos = Prop(root, "eos_token_id") is { } e
            ? (e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt32()).ToArray() : [e.GetInt32()])
            : new[] { 151645 };
        var tokens = new SpecialTokenIds(
            Int(root, "bos_token_id", 151643), eos, Int(root, "vision_start_token_id", 151652),
            Int(root, "vision_end_token_id", 151653), Int(root, "vision_token_id", 151654),
            Int(root, "image_token_id", 151655), Int(root, "video_token_id", 151656));

        var v = Prop(root, "vision_config") ?? throw new FormatException("'vision_config' is missing.");
        var vision = new Qwen2VisionConfig(
            Int(v, "depth", 32), Int(v, "hidden_size", 1280), Int(v, "intermediate_size", 3420), Int(v, "num_heads", 16),
            Int(v, "in_chans", Int(v, "in_channels", 3)), Int(v, "out_hidden_size", 2048), Int(v, "patch_size", 14),
            Int(v, "spatial_merge_size", 2), Int(v, "temporal_patch_size", 2), Int(v, "window_size", 112),
            Ints(v, "fullatt_block_indexes", [7, 15, 23, 31]), Int(v, "tokens_per_second", 2), String(v, "hidden_act", "silu"));

        SpatialEncoderConfig? spatial = Prop(root, "spatial_config") is { } s ? ParseSpatial(s) : null;
        ConnectorConfig? connector = Prop(root, "connector_config") is { } c
            ? new ConnectorConfig(String(c, "connector_type", "mlp_add"), Int(c, "spatial_embeds_layer_idx", -1),
                Int(c, "num_heads", 8), Double(c, "mlp_ratio", 4), String(c, "hidden_act", "gelu"), Bool(c, "bias", false))
            : null;
        string modelType = String(root, "model_type", spatial != null ? "spatial-mllm" : "qwen2_5_vl");
        return new SpatialMllmConfig(modelType, textConfig, vision, tokens, spatial, connector);
    }

    internal static SpatialEncoderConfig ParseSpatial(JsonElement s)
    {
        var d = SpatialEncoderConfig.Vggt1B;
        int embedDim = Int(s, "embed_dim", d.EmbedDim);
        var pe = Prop(s, "patch_embed");
        var patchEmbed = pe is { } p
            ? new DinoPatchEmbedConfig(Int(p, "embed_dim", embedDim), Int(p, "depth", d.PatchEmbed.Depth),
                Int(p, "num_heads", d.PatchEmbed.NumHeads), Double(p, "mlp_ratio", d.PatchEmbed.MlpRatio),
                Double(p, "init_values", d.PatchEmbed.InitValues))
            : d.PatchEmbed with { EmbedDim = embedDim };
        var ch = Prop(s, "camera_head");
        var camera = ch is { } c ? new CameraHeadConfig(Int(c, "trunk_depth", d.CameraHead.TrunkDepth), Int(c, "num_heads", d.CameraHead.NumHeads)) : d.CameraHead;
        var dh = Prop(s, "dpt_head");
        var dpt = dh is { } h
            ? new DptHeadConfig(Int(h, "features", d.DptHead.Features), Ints(h, "out_channels", d.DptHead.OutChannels),
                Ints(h, "intermediate_layer_idx", d.DptHead.IntermediateLayerIdx))
            : d.DptHead;
        return new SpatialEncoderConfig(
            Int(s, "img_size", d.ImgSize), Int(s, "patch_size", d.PatchSize), embedDim, Int(s, "depth", d.Depth),
            Int(s, "num_heads", d.NumHeads), Int(s, "num_register_tokens", d.NumRegisterTokens),
            Double(s, "mlp_ratio", d.MlpRatio), patchEmbed, camera, dpt);
    }

    static JsonElement? Prop(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    static int Int(JsonElement e, string name, int fallback) => Prop(e, name) is { } v ? Checked(name, v, () => v.GetInt32()) : fallback;
    static double Double(JsonElement e, string name, double fallback) => Prop(e, name) is { } v ? Checked(name, v, () => v.GetDouble()) : fallback;
    static bool Bool(JsonElement e, string name, bool fallback) => Prop(e, name) is { } v ? Checked(name, v, () => v.GetBoolean()) : fallback;
    static string String(JsonElement e, string name, string fallback) => Prop(e, name) is { } v ? Checked(name, v, () => v.GetString()!) : fallback;
    static IReadOnlyList<int> Ints(JsonElement e, string name, IReadOnlyList<int> fallback) =>
        Prop(e, name) is { } v ? Checked(name, v, () => v.EnumerateArray().Select(x => x.GetInt32()).ToArray()) : fallback;

    static T Checked<T>(string name, JsonElement v, Func<T> read)
    {
        try { return read(); }
        catch (InvalidOperationException) { throw new FormatException($"field '{name}' has the wrong type ({v.ValueKind}: {v})."); }
        catch (FormatException) { throw new FormatException($"field '{name}' has the wrong type ({v.ValueKind}: {v})."); }
    }
}
