using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The Qwen2.5 decoder stack (checkpoint prefix <c>model.</c>): <c>embed_tokens</c>, <c>layers.{i}</c>, <c>norm</c>.
/// Takes embeddings rather than ids so fused visual tokens can be placed in the sequence first. There is no padding
/// mask: the sequences of a batch must be unpadded and of equal length (Spatial-MLLM runs batch size 1).
/// </summary>
public sealed class Qwen2TextModel : nn.Module
{
    public readonly TokenEmbedding embed_tokens;
    public readonly ModuleList<Qwen2DecoderLayer> layers;
    public readonly Qwen2RmsNorm norm;
    readonly Qwen2TextConfig _config;

    public Qwen2TextModel(Qwen2TextConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2TextModel))
    {
        if (config.HiddenSize % config.NumAttentionHeads != 0)
            throw new ArgumentException($"hidden_size {config.HiddenSize} is not a multiple of num_attention_heads {config.NumAttentionHeads}.");
        _config = config;
        embed_tokens = new TokenEmbedding(config.VocabSize, config.HiddenSize, device, dtype);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new Qwen2DecoderLayer(config, i, device, dtype)).ToArray());
        norm = new Qwen2RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        rotary_emb = new MultimodalRotaryEmbedding(config.HeadDim, config.RopeTheta, config.MropeSection);
        RegisterComponents();
    }

    public Qwen2TextConfig Config => _config;

    /// <summary>Training: recompute each layer's activations in the backward pass instead of keeping them
    /// (<see cref="CheckpointedDecoderLayer"/>): less memory, one more forward.</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>The M-RoPE tables: <c>rotary_emb.forward(position_ids, dtype)</c> → the (cos, sin) every layer takes.</summary>
    public MultimodalRotaryEmbedding rotary_emb { get; }

    /// <summary>How the layers compute attention (transformers' <c>attn_implementation</c>); the fast path by default.</summary>
    public AttentionImplementation AttentionImplementation { get; set; } = AttentionImplementation.Fused;

    ModelHooks? _hooks;
    string[] _layerPoints = [];
    string _normPoint = "norm";
    string[] _points = [];
    int _checkedVersion = -1;
    bool _hooked;

    /// <summary>Runs <paramref name="hooks"/> at <c>{prefix}layers.{i}</c> (each layer's output), at
    /// <c>{prefix}layers.{i}.self_attn.attn_weights</c> (attention probabilities) and at <c>{prefix}norm</c>.</summary>
    internal void AttachHooks(ModelHooks hooks, string prefix)
    {
        _hooks = hooks;
        _layerPoints = Enumerable.Range(0, layers.Count).Select(i => $"{prefix}layers.{i}").ToArray();
        _normPoint = prefix + "norm";
        for (int i = 0; i < layers.Count; i++) layers[i].self_attn.AttachHooks(hooks, _layerPoints[i] + ".self_attn.attn_weights");
        _points = [.. _layerPoints.SelectMany(p => new[] { p, p + ".self_attn.attn_weights" }), _normPoint];
    }

    internal IReadOnlyList<string> HookPoints => _points;

    /// <summary>Whether a hook is set on any of this decoder's points (then decoding runs the eager path, which calls them).</summary>
    internal bool HasHooks
    {
        get
        {
            if (_hooks is not { Any: true } hooks) return false;
            int version = hooks.Version;
            if (version != _checkedVersion)
            {
                _hooked = _points.Any(hooks.IsSet);
                _checkedVersion = version;
            }
            return _hooked;
        }
    }

    /// <summary>Whether a LoRA adapter on a decoder projection is active (<see cref="LoraLayer"/>): the TorchScript / CUDA-graph
    /// decode step packs the base weights only, so decoding then runs the eager path, which adds the adapters' updates.</summary>
    internal bool HasActiveAdapters => layers.Any(layer => layer.Projections.Any(LoraLayer.IsActive));

    /// <summary>The token embedding table [vocab, hidden] (also the tied LM head).</summary>
    public Tensor EmbeddingWeight => embed_tokens.Weight;

    /// <summary>input_ids [B, L] → [B, L, hidden].</summary>
    public Tensor EmbedTokens(Tensor inputIds) => embed_tokens.forward(inputIds);

    /// <summary>
    /// inputs_embeds [B, L, hidden], position_ids [3, B, L] (M-RoPE, see <see cref="RopeIndex"/>) → final-norm hidden
    /// states [B, L, hidden]. With a cache, the L tokens follow the <see cref="Qwen2KvCache.Length"/> cached ones
    /// (causal within the step) and are appended to it.
    /// </summary>
    public Tensor forward(Tensor inputsEmbeds, Tensor positionIds, Qwen2KvCache? cache = null)
    {
        if (inputsEmbeds.dim() != 3 || inputsEmbeds.shape[2] != _config.HiddenSize)
            throw new ArgumentException($"inputs_embeds must be [B, L, {_config.HiddenSize}], got [{string.Join(", ", inputsEmbeds.shape)}].");
        long batch = inputsEmbeds.shape[0], length = inputsEmbeds.shape[1];
        if (positionIds.dim() != 3 || positionIds.shape[0] != 3 || positionIds.shape[1] != batch || positionIds.shape[2] != length)
            throw new ArgumentException($"position_ids must be [3, {batch}, {length}], got [{string.Join(", ", positionIds.shape)}].");
        long total = (cache?.Length ?? 0) + length;
        if (total > _config.MaxPositionEmbeddings)
            throw new ArgumentException(
                $"The sequence would be {total} tokens long ({cache?.Length ?? 0} cached + {length} new), more than the model's " +
                $"max_position_embeddings ({_config.MaxPositionEmbeddings}). Shorten the prompt, use fewer or smaller frames, or lower max_new_tokens.");

        using var scope = torch.NewDisposeScope();
        // cos / sin (and the fast path's signed sin) once per forward, shared by every layer.
        var implementation = AttentionImplementation;
        var (cos, sin) = rotary_emb.forward(positionIds, inputsEmbeds.dtype);
        var signedSin = implementation == AttentionImplementation.Fused ? RotaryEmbedding.SignedSin(sin) : null;
        var x = inputsEmbeds;
        bool hooked = HasHooks;
        bool checkpointed = GradientCheckpointing && cache is null && torch.is_grad_enabled();
        if (checkpointed && layers.Any(layer => layer.Projections.Any(p => LoraLayer.Of(p)?.DrawsDropout == true)))
            throw new InvalidOperationException(
                "Gradient checkpointing recomputes each decoder layer in the backward pass, where LoRA dropout would draw other masks " +
                "than in the forward (TorchSharp cannot restore the CUDA generator's state as torch.utils.checkpoint does): set lora_dropout " +
                "to 0, or turn gradient checkpointing off.");
        if (checkpointed) x = CheckpointSegment.Input(x);
        for (int i = 0; i < layers.Count; i++)
        {
            x = checkpointed ? CheckpointedDecoderLayer.apply(layers[i], x, cos, sin, implementation)
                : layers[i].Forward(x, cos, sin, signedSin, cache, implementation);
            if (hooked) x = _hooks!.Run(_layerPoints[i], x);
        }
        cache?.Advance(length);
        var normed = norm.forward(x);
        if (hooked) normed = _hooks!.Run(_normPoint, normed);
        return normed.MoveToOuterDisposeScope();
    }
}
