using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>Which learning rate a trainable parameter takes (the seed's two optimizer groups).</summary>
public enum ParameterGroup
{
    /// <summary>The decoder and its (tied) lm_head — and the vision tower and VGGT when they train (the seed's
    /// <c>create_optimizer</c> gives every parameter outside the projector the default group): <c>learning_rate</c>.</summary>
    Language,
    /// <summary><c>visual.merger.*</c> and <c>connector.*</c>: <c>mm_projector_lr</c>.</summary>
    Projector,
}

/// <summary>A trainable parameter by its checkpoint key.</summary>
/// <param name="WeightDecay">Whether AdamW decays it (transformers: every parameter except biases and LayerNorm weights).</param>
public sealed record TrainableParameter(string Key, Parameter Parameter, ParameterGroup Group, bool WeightDecay);

/// <summary>What to fine-tune: the seed's <c>tune_mm_*</c> switches (<c>set_model</c> in <c>train_qwen.py</c>).</summary>
/// <param name="TuneLanguage"><c>tune_mm_llm</c>: the decoder and lm_head.</param>
/// <param name="TuneConnector"><c>tune_mm_connector</c>: <c>visual.merger</c> and the connector.</param>
/// <param name="TuneVision"><c>tune_mm_vision</c>: the whole vision tower (merger included).</param>
/// <param name="TuneSpatialEncoder"><c>tune_mm_spatial_encoder</c>: every VGGT parameter (<c>spatial_encoder.*</c>: the
/// aggregator and the camera, depth and point heads, which the SFT loss leaves without a gradient); VGGT then runs with
/// autograd and its tokens are recomputed in every forward.</param>
public sealed record TrainableSet(bool TuneLanguage = true, bool TuneConnector = true, bool TuneVision = false, bool TuneSpatialEncoder = false)
{
    /// <summary>Finer than <see cref="TuneSpatialEncoder"/>: the aggregator's last N frame/global block pairs train
    /// (<c>aggregator.frame_blocks.{i}</c>, <c>global_blocks.{i}</c>, i ≥ depth − N); 0: none.</summary>
    public int SpatialEncoderLastBlocks { get; init; }

    /// <summary>Finer than <see cref="TuneSpatialEncoder"/>: VGGT's camera, depth and point heads train (what VGGT's own
    /// losses reach; the SFT loss does not).</summary>
    public bool SpatialEncoderHeads { get; init; }

    /// <summary>The seed's released recipe (<c>spatial_mllm_train_demo.sh</c>).</summary>
    public static TrainableSet Seed { get; } = new();

    /// <summary>
    /// Sets <c>requires_grad</c> on every parameter of the model as <c>set_model</c> does and returns the trainable ones
    /// by checkpoint key, sorted. The tied embedding is one parameter (<c>model.embed_tokens.weight</c>), also the head.
    /// </summary>
    public IReadOnlyList<TrainableParameter> Apply(SpatialMllmModel model)
    {
        int depth = model.spatial_encoder?.vggt_model.aggregator.Depth ?? 0;
        if (SpatialEncoderLastBlocks < 0 || SpatialEncoderLastBlocks > depth)
            throw new ArgumentOutOfRangeException(nameof(SpatialEncoderLastBlocks),
                $"tune_mm_spatial_encoder_last_blocks {SpatialEncoderLastBlocks}: the model's VGGT aggregator has {depth} block pairs (use 0..{depth}).");
        var trainable = new List<TrainableParameter>();
        foreach (var (prefix, module) in model.Components())
        {
            // transformers' ALL_LAYERNORM_LAYERS: nn.LayerNorm weights are not decayed (VGGT's; Qwen's norms are RMSNorms).
            var layerNorms = module.named_modules().Where(m => m.module is LayerNorm)
                .SelectMany(m => m.module.named_parameters().Select(p => prefix + m.name + "." + p.name)).ToHashSet();
            foreach (var (name, parameter) in module.named_parameters())
            {
                string key = prefix + name;
                bool train = IsTrainable(key, depth);
                parameter.requires_grad = train;
                if (train) trainable.Add(new TrainableParameter(key, parameter, GroupOf(key), DecaysWeight(key) && !layerNorms.Contains(key)));
            }
        }
        return trainable.OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
    }

    /// <summary>Whether set_model leaves this checkpoint key trainable; <paramref name="spatialDepth"/>: the VGGT
    /// aggregator's block pairs (for <see cref="SpatialEncoderLastBlocks"/>).</summary>
    public bool IsTrainable(string key, int spatialDepth = 0)
    {
        if (key.StartsWith("visual.merger.", StringComparison.Ordinal)) return TuneConnector || TuneVision;
        if (key.StartsWith("visual.", StringComparison.Ordinal)) return TuneVision;
        if (key.StartsWith("connector.", StringComparison.Ordinal)) return TuneConnector;
        if (key.StartsWith(VggtModel.CheckpointPrefix, StringComparison.Ordinal))
            return TuneSpatialEncoder || IsTunedVggtPart(key[VggtModel.CheckpointPrefix.Length..], spatialDepth);
        if (key.StartsWith("spatial_encoder.", StringComparison.Ordinal)) return TuneSpatialEncoder;
        return TuneLanguage; // model.* and lm_head.*
    }

    bool IsTunedVggtPart(string key, int depth)
    {
        if (key.StartsWith("camera_head.", StringComparison.Ordinal) || key.StartsWith("depth_head.", StringComparison.Ordinal)
            || key.StartsWith("point_head.", StringComparison.Ordinal))
            return SpatialEncoderHeads;
        foreach (string blocks in (string[])["aggregator.frame_blocks.", "aggregator.global_blocks."])
            if (key.StartsWith(blocks, StringComparison.Ordinal))
            {
                string rest = key[blocks.Length..];
                return int.TryParse(rest[..rest.IndexOf('.')], out int block) && block >= depth - SpatialEncoderLastBlocks && SpatialEncoderLastBlocks > 0;
            }
        return false;
    }

    static ParameterGroup GroupOf(string key) =>
        key.StartsWith("visual.merger.", StringComparison.Ordinal) || key.StartsWith("connector.", StringComparison.Ordinal)
            ? ParameterGroup.Projector : ParameterGroup.Language;

    /// <summary>
    /// The seed's <c>create_optimizer</c>: <c>get_parameter_names(model, ALL_LAYERNORM_LAYERS)</c> minus names containing
    /// "bias". ALL_LAYERNORM_LAYERS is <c>nn.LayerNorm</c> only, and Qwen's RMSNorms are not LayerNorms, so their weights
    /// are decayed; only biases are not. (VGGT's LayerNorm weights are not decayed either: <see cref="Apply"/> finds
    /// them by module type.)
    /// </summary>
    public static bool DecaysWeight(string key) => !key.Contains("bias", StringComparison.Ordinal);
}
