using SpatialMllm.Research.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>Which learning rate a trainable parameter takes (the seed's two optimizer groups).</summary>
public enum ParameterGroup
{
    /// <summary>The decoder and its (tied) lm_head: <c>learning_rate</c>.</summary>
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
/// <param name="TuneSpatialEncoder"><c>tune_mm_spatial_encoder</c>: VGGT (not supported: it runs without autograd).</param>
public sealed record TrainableSet(bool TuneLanguage = true, bool TuneConnector = true, bool TuneVision = false, bool TuneSpatialEncoder = false)
{
    /// <summary>The seed's released recipe (<c>spatial_mllm_train_demo.sh</c>).</summary>
    public static TrainableSet Seed { get; } = new();

    /// <summary>
    /// Sets <c>requires_grad</c> on every parameter of the model as <c>set_model</c> does and returns the trainable ones
    /// by checkpoint key, sorted. The tied embedding is one parameter (<c>model.embed_tokens.weight</c>), also the head.
    /// </summary>
    public IReadOnlyList<TrainableParameter> Apply(SpatialMllmModel model)
    {
        if (TuneSpatialEncoder)
            throw new NotSupportedException("tune_mm_spatial_encoder: VGGT runs without autograd here; the seed's recipe keeps it frozen.");
        var trainable = new List<TrainableParameter>();
        foreach (var (prefix, module) in model.Components())
            foreach (var (name, parameter) in module.named_parameters())
            {
                string key = prefix + name;
                bool train = IsTrainable(key);
                parameter.requires_grad = train;
                if (train) trainable.Add(new TrainableParameter(key, parameter, GroupOf(key), DecaysWeight(key)));
            }
        return trainable.OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
    }

    /// <summary>Whether set_model leaves this checkpoint key trainable.</summary>
    public bool IsTrainable(string key)
    {
        if (key.StartsWith("visual.merger.", StringComparison.Ordinal)) return TuneConnector || TuneVision;
        if (key.StartsWith("visual.", StringComparison.Ordinal)) return TuneVision;
        if (key.StartsWith("connector.", StringComparison.Ordinal)) return TuneConnector;
        if (key.StartsWith("spatial_encoder.", StringComparison.Ordinal)) return false;
        return TuneLanguage; // model.* and lm_head.*
    }

    static ParameterGroup GroupOf(string key) =>
        key.StartsWith("visual.merger.", StringComparison.Ordinal) || key.StartsWith("connector.", StringComparison.Ordinal)
            ? ParameterGroup.Projector : ParameterGroup.Language;

    /// <summary>
    /// The seed's <c>create_optimizer</c>: <c>get_parameter_names(model, ALL_LAYERNORM_LAYERS)</c> minus names containing
    /// "bias". ALL_LAYERNORM_LAYERS is <c>nn.LayerNorm</c> only, and Qwen's RMSNorms are not LayerNorms, so their weights
    /// are decayed; only biases are not.
    /// </summary>
    public static bool DecaysWeight(string key) => !key.Contains("bias", StringComparison.Ordinal);
}
