using System.Globalization;
using SpatialMllm.Research.Configs;

namespace SpatialMllm.Research.Checkpoints;

/// <summary>
/// Checks a config before any module is allocated: every size positive, the divisions the model makes exact (hidden
/// size by heads, heads by key/value heads, the window by the merged patch), indexes in range, and the parameter count
/// the config implies not far above what the checkpoint's own tensors hold — so <c>num_hidden_layers: 1000000</c> or
/// <c>hidden_size: 1000000000</c> is an error naming the file and key, not gigabytes of allocation or a libtorch trace.
/// Every size that allocates counts in that estimate: VGGT's heads (<c>camera_head.trunk_depth</c>, <c>dpt_head.features</c>
/// and <c>out_channels</c>) and position and register tokens (<c>img_size</c>, <c>num_register_tokens</c>) as well.
/// </summary>
internal static class ConfigValidation
{
    /// <summary>The implied parameter count may exceed the stored one by this factor (plus <see cref="Slack"/>) before the
    /// config is refused: the estimate counts only the large matrices, so a matching config is always below it.</summary>
    const double StoredFactor = 1.25;
    /// <remarks>Room for a test-sized config (the tiny fixture's, VGGT heads counted, is about 1.2M) against any weights.</remarks>
    const double Slack = 2e6;
    /// <summary>Above this no config is plausible whatever the checkpoint (10× the largest released LLMs).</summary>
    const double AbsoluteLimit = 1e13;

    /// <summary>Validates a Spatial-MLLM / Qwen2.5-VL config; <paramref name="storedElements"/> (the checkpoint's tensor
    /// elements, all files) bounds the parameter count when given.</summary>
    public static void Validate(SpatialMllmConfig config, string configPath, long? storedElements)
    {
        var problems = new List<string>();
        CheckText(config.Text, config.Tokens, problems);
        CheckVision(config.Vision, problems);
        if (config.Spatial != null) CheckSpatial(config.Spatial, "spatial_config.", problems);
        if (config.Connector is { } c && config.Spatial is { } s && (c.SpatialEmbedsLayerIdx >= s.Depth || c.SpatialEmbedsLayerIdx < -s.Depth))
            problems.Add($"connector_config.spatial_embeds_layer_idx = {c.SpatialEmbedsLayerIdx} is outside the {s.Depth} VGGT layers");
        if (config.Connector is { } connector)
        {
            Positive(problems, "connector_config.num_heads", connector.NumHeads);
            if (!(connector.MlpRatio > 0) || connector.MlpRatio > 64) problems.Add($"connector_config.mlp_ratio = {Format(connector.MlpRatio)} must be in (0, 64]");
        }
        Throw(configPath, problems);
        var t = config.Text;
        var v = config.Vision;
        var parts = new List<(string, double)>
        {
            ($"language model (num_hidden_layers = {t.NumHiddenLayers}, hidden_size = {t.HiddenSize}, intermediate_size = {t.IntermediateSize}, vocab_size = {t.VocabSize})", TextParameters(t)),
            ($"vision tower (vision_config.depth = {v.Depth}, hidden_size = {v.HiddenSize}, intermediate_size = {v.IntermediateSize})", VisionParameters(v)),
        };
        if (config.Spatial is { } sp) parts.AddRange(SpatialParts(sp, "spatial_config."));
        CheckSize(configPath, parts, storedElements);
    }

    /// <summary>Validates VGGT's part alone (a facebook/VGGT-1B folder or the spatial section of a Spatial-MLLM config).</summary>
    public static void ValidateSpatial(SpatialEncoderConfig spatial, string configPath, string keyPrefix, long? storedElements)
    {
        var problems = new List<string>();
        CheckSpatial(spatial, keyPrefix, problems);
        Throw(configPath, problems);
        CheckSize(configPath, SpatialParts(spatial, keyPrefix), storedElements);
    }

    /// <summary>VGGT's aggregator (with its patch embedding), camera head and two DPT heads, each with its sizes and estimated parameters.</summary>
    static List<(string, double)> SpatialParts(SpatialEncoderConfig s, string p) =>
    [
        ($"VGGT aggregator ({p}depth = {s.Depth}, embed_dim = {s.EmbedDim}, patch_embed.depth = {s.PatchEmbed.Depth}, img_size = {s.ImgSize}, " +
         $"patch_size = {s.PatchSize}, num_register_tokens = {s.NumRegisterTokens})", SpatialParameters(s)),
        ($"VGGT camera head ({p}camera_head.trunk_depth = {s.CameraHead.TrunkDepth}, embed_dim = {s.EmbedDim})", CameraHeadParameters(s)),
        ($"VGGT depth and point heads ({p}dpt_head.features = {s.DptHead.Features}, dpt_head.out_channels = [{string.Join(", ", s.DptHead.OutChannels)}])",
            DptHeadParameters(s)),
    ];

    static void CheckText(Qwen2TextConfig t, SpecialTokenIds tokens, List<string> problems)
    {
        Positive(problems, "vocab_size", t.VocabSize);
        Positive(problems, "hidden_size", t.HiddenSize);
        Positive(problems, "intermediate_size", t.IntermediateSize);
        Positive(problems, "num_hidden_layers", t.NumHiddenLayers);
        Positive(problems, "max_position_embeddings", t.MaxPositionEmbeddings);
        bool heads = Positive(problems, "num_attention_heads", t.NumAttentionHeads);
        bool kvHeads = Positive(problems, "num_key_value_heads", t.NumKeyValueHeads);
        if (heads && t.HiddenSize > 0 && t.HiddenSize % t.NumAttentionHeads != 0)
            problems.Add($"hidden_size = {t.HiddenSize} is not divisible by num_attention_heads = {t.NumAttentionHeads}");
        if (heads && kvHeads && t.NumAttentionHeads % t.NumKeyValueHeads != 0)
            problems.Add($"num_attention_heads = {t.NumAttentionHeads} is not divisible by num_key_value_heads = {t.NumKeyValueHeads}");
        if (heads && t.HiddenSize > 0 && t.HiddenSize % t.NumAttentionHeads == 0)
        {
            int headDim = t.HeadDim;
            if (t.MropeSection.Count != 3 || t.MropeSection.Any(x => x <= 0) || 2 * t.MropeSection.Sum() != headDim)
                problems.Add($"rope_scaling.mrope_section = [{string.Join(", ", t.MropeSection)}] must be three positive numbers summing to half the head size (hidden_size / num_attention_heads / 2 = {headDim / 2.0})");
        }
        if (!(t.RmsNormEps > 0)) problems.Add($"rms_norm_eps = {Format(t.RmsNormEps)} must be positive");
        if (!(t.RopeTheta > 0) || double.IsInfinity(t.RopeTheta)) problems.Add($"rope_theta = {Format(t.RopeTheta)} must be positive and finite");
        if (t.VocabSize > 0)
            foreach (var (name, id) in new[]
                     {
                         ("bos_token_id", tokens.BosTokenId), ("vision_start_token_id", tokens.VisionStartTokenId),
                         ("vision_end_token_id", tokens.VisionEndTokenId), ("vision_token_id", tokens.VisionTokenId),
                         ("image_token_id", tokens.ImageTokenId), ("video_token_id", tokens.VideoTokenId),
                     }.Concat(tokens.EosTokenIds.Select(id => ("eos_token_id", id))))
                if (id < 0 || id >= t.VocabSize) problems.Add($"{name} = {id} is outside the vocabulary (vocab_size = {t.VocabSize})");
    }

    static void CheckVision(Qwen2VisionConfig v, List<string> problems)
    {
        const string p = "vision_config.";
        Positive(problems, p + "depth", v.Depth);
        Positive(problems, p + "hidden_size", v.HiddenSize);
        Positive(problems, p + "intermediate_size", v.IntermediateSize);
        Positive(problems, p + "in_chans", v.InChannels);
        Positive(problems, p + "out_hidden_size", v.OutHiddenSize);
        Positive(problems, p + "tokens_per_second", v.TokensPerSecond);
        bool heads = Positive(problems, p + "num_heads", v.NumHeads);
        bool patch = Positive(problems, p + "patch_size", v.PatchSize);
        bool merge = Positive(problems, p + "spatial_merge_size", v.SpatialMergeSize);
        Positive(problems, p + "temporal_patch_size", v.TemporalPatchSize);
        bool window = Positive(problems, p + "window_size", v.WindowSize);
        if (heads && v.HiddenSize > 0 && (v.HiddenSize % v.NumHeads != 0 || v.HeadDim % 4 != 0))
            problems.Add($"{p}hidden_size = {v.HiddenSize} must divide into num_heads = {v.NumHeads} heads of a size divisible by 4 (2-D rotary embedding)");
        if (patch && merge && window && v.WindowSize % (v.PatchSize * v.SpatialMergeSize) != 0)
            problems.Add($"{p}window_size = {v.WindowSize} is not a multiple of patch_size × spatial_merge_size = {v.PatchSize * v.SpatialMergeSize}");
        foreach (int index in v.FullAttentionBlockIndexes)
            if (index < 0 || index >= v.Depth) problems.Add($"{p}fullatt_block_indexes has {index}, outside the {v.Depth} blocks");
    }

    static void CheckSpatial(SpatialEncoderConfig s, string p, List<string> problems)
    {
        bool size = Positive(problems, p + "img_size", s.ImgSize);
        bool patch = Positive(problems, p + "patch_size", s.PatchSize);
        Positive(problems, p + "embed_dim", s.EmbedDim);
        Positive(problems, p + "depth", s.Depth);
        if (s.NumRegisterTokens < 0) problems.Add($"{p}num_register_tokens = {s.NumRegisterTokens} must not be negative");
        if (!(s.MlpRatio > 0) || s.MlpRatio > 64) problems.Add($"{p}mlp_ratio = {Format(s.MlpRatio)} must be in (0, 64]");
        if (Positive(problems, p + "num_heads", s.NumHeads) && s.EmbedDim > 0 && (s.EmbedDim % s.NumHeads != 0 || s.HeadDim % 4 != 0))
            problems.Add($"{p}embed_dim = {s.EmbedDim} must divide into num_heads = {s.NumHeads} heads of a size divisible by 4 (2-D rotary embedding)");
        if (size && patch && s.ImgSize % s.PatchSize != 0)
            problems.Add($"{p}img_size = {s.ImgSize} is not a multiple of patch_size = {s.PatchSize}");
        var pe = s.PatchEmbed;
        Positive(problems, p + "patch_embed.embed_dim", pe.EmbedDim);
        Positive(problems, p + "patch_embed.depth", pe.Depth);
        if (pe.EmbedDim != s.EmbedDim) problems.Add($"{p}patch_embed.embed_dim = {pe.EmbedDim} differs from embed_dim = {s.EmbedDim}");
        if (Positive(problems, p + "patch_embed.num_heads", pe.NumHeads) && pe.EmbedDim > 0 && pe.EmbedDim % pe.NumHeads != 0)
            problems.Add($"{p}patch_embed.embed_dim = {pe.EmbedDim} is not divisible by patch_embed.num_heads = {pe.NumHeads}");
        if (!(pe.MlpRatio > 0) || pe.MlpRatio > 64) problems.Add($"{p}patch_embed.mlp_ratio = {Format(pe.MlpRatio)} must be in (0, 64]");
        Positive(problems, p + "camera_head.trunk_depth", s.CameraHead.TrunkDepth);
        if (Positive(problems, p + "camera_head.num_heads", s.CameraHead.NumHeads) && s.EmbedDim > 0 && 2 * s.EmbedDim % s.CameraHead.NumHeads != 0)
            problems.Add($"{p}camera_head.num_heads = {s.CameraHead.NumHeads} does not divide the camera head's width 2 × embed_dim = {2 * s.EmbedDim}");
        Positive(problems, p + "dpt_head.features", s.DptHead.Features);
        if (s.DptHead.OutChannels.Count != 4 || s.DptHead.OutChannels.Any(c => c <= 0))
            problems.Add($"{p}dpt_head.out_channels = [{string.Join(", ", s.DptHead.OutChannels)}] must be four positive sizes");
        if (s.DptHead.IntermediateLayerIdx.Count != 4 || s.DptHead.IntermediateLayerIdx.Any(i => i < 0 || i >= s.Depth))
            problems.Add($"{p}dpt_head.intermediate_layer_idx = [{string.Join(", ", s.DptHead.IntermediateLayerIdx)}] must be four layers in [0, {s.Depth})");
    }

    // Parameter counts of the large matrices only (embeddings, attention, MLPs): a lower estimate of the real count.
    static double TextParameters(Qwen2TextConfig t)
    {
        double h = t.HiddenSize, kv = (double)t.NumKeyValueHeads * (t.NumAttentionHeads > 0 ? h / t.NumAttentionHeads : 0);
        double layer = 2 * h * h + 2 * h * kv + 3 * h * t.IntermediateSize;
        return (double)t.VocabSize * h * (t.TieWordEmbeddings ? 1 : 2) + t.NumHiddenLayers * layer;
    }

    static double VisionParameters(Qwen2VisionConfig v)
    {
        double h = v.HiddenSize, merged = h * v.SpatialMergeSize * v.SpatialMergeSize;
        return (double)v.InChannels * v.TemporalPatchSize * v.PatchSize * v.PatchSize * h
               + v.Depth * (4 * h * h + 3 * h * v.IntermediateSize) + merged * merged + merged * v.OutHiddenSize;
    }

    static double SpatialParameters(SpatialEncoderConfig s)
    {
        double pe = s.PatchEmbed.EmbedDim, e = s.EmbedDim, grid = (double)s.ImgSize / s.PatchSize;
        // The DINO patch embedding: blocks, the patch convolution and the position embedding of the pretraining grid;
        // then the aggregator's frame and global blocks and its camera and register tokens.
        return s.PatchEmbed.Depth * (4 + 2 * s.PatchEmbed.MlpRatio) * pe * pe + 3.0 * s.PatchSize * s.PatchSize * pe + grid * grid * pe
               + 2.0 * s.Depth * (4 + 2 * s.MlpRatio) * e * e + 2.0 * (1 + s.NumRegisterTokens) * e;
    }

    /// <summary>The camera head's trunk: blocks of width 2 × embed_dim with an MLP ratio of 4.</summary>
    static double CameraHeadParameters(SpatialEncoderConfig s)
    {
        double width = 2.0 * s.EmbedDim;
        return s.CameraHead.TrunkDepth * 12 * width * width;
    }

    /// <summary>The depth and point heads (one DPT each): 1×1 projections to out_channels, the resize convolutions, the
    /// 3×3 convolutions to <c>features</c> and the four fusion blocks of 3×3 convolutions.</summary>
    static double DptHeadParameters(SpatialEncoderConfig s)
    {
        var oc = s.DptHead.OutChannels.Select(c => (double)c).ToArray();
        if (oc.Length != 4) return 0;
        double width = 2.0 * s.EmbedDim, f = s.DptHead.Features;
        double head = oc.Sum(c => width * c + 9 * c * f) + 16 * oc[0] * oc[0] + 4 * oc[1] * oc[1] + 9 * oc[3] * oc[3]
                      + 14 * 9 * f * f + 4 * f * f + 9 * f * (f / 2);
        return 2 * head;
    }

    /// <param name="parts">Each component's description (its sizes) and estimated parameter count.</param>
    static void CheckSize(string configPath, IReadOnlyList<(string What, double Parameters)> parts, long? storedElements)
    {
        double estimate = parts.Sum(p => p.Parameters);
        var (largest, largestCount) = parts.MaxBy(p => p.Parameters);
        string detail = $"the largest part is the {largest}: about {Count(largestCount)}";
        if (estimate > AbsoluteLimit || double.IsNaN(estimate))
            throw new CheckpointFormatException($"{configPath}: the sizes describe a model of about {Count(estimate)} parameters; refusing to build it ({detail}).");
        if (storedElements is long stored && estimate > StoredFactor * stored + Slack)
            throw new CheckpointFormatException(
                $"{configPath}: the sizes describe a model of at least {Count(estimate)} parameters, but the checkpoint's tensors hold only {Count(stored)}, " +
                $"so the config does not belong to these weights ({detail}).");
    }

    static bool Positive(List<string> problems, string key, int value)
    {
        if (value > 0) return true;
        problems.Add($"{key} = {value} must be positive");
        return false;
    }

    static void Throw(string configPath, List<string> problems)
    {
        if (problems.Count > 0) throw new CheckpointFormatException($"{configPath}: {string.Join("; ", problems)}.");
    }

    static string Format(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    static string Count(double n) => n >= 1e9 ? $"{n / 1e9:0.#}B" : n >= 1e6 ? $"{n / 1e6:0.#}M" : n.ToString("0", CultureInfo.InvariantCulture);
}
