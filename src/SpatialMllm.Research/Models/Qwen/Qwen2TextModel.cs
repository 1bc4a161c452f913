using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using SpatialMllm.Research.Checkpoints;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The Qwen2.5 decoder stack (checkpoint prefix <c>model.</c>): <c>embed_tokens</c>, <c>layers.{i}</c>, <c>norm</c>.
/// Takes embeddings rather than ids so fused visual tokens can be placed in the sequence first. There is no padding
/// mask: the sequences of a batch must be unpadded and of equal length (Spatial-MLLM runs batch size 1).
/// </summary>
public sealed class Qwen2TextModel : nn.Module
{
    readonly TokenEmbedding embed_tokens;
    readonly ModuleList<Qwen2DecoderLayer> layers;
    readonly Qwen2RmsNorm norm;
    readonly MultimodalRotaryEmbedding _rotary;
    readonly Qwen2TextConfig _config;

    public Qwen2TextModel(Qwen2TextConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2TextModel))
    {
        if (config.HiddenSize % config.NumAttentionHeads != 0)
            throw new ArgumentException($"hidden_size {config.HiddenSize} is not a multiple of num_attention_heads {config.NumAttentionHeads}.");
        _config = config;
        embed_tokens = new TokenEmbedding(config.VocabSize, config.HiddenSize, device, dtype);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new Qwen2DecoderLayer(config, i, device, dtype)).ToArray());
        norm = new Qwen2RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        _rotary = new MultimodalRotaryEmbedding(config.HeadDim, config.RopeTheta, config.MropeSection);
        RegisterComponents();
    }

    public Qwen2TextConfig Config => _config;

    /// <summary>Training: recompute each layer's activations in the backward pass instead of keeping them
    /// (<see cref="CheckpointedDecoderLayer"/>): less memory, one more forward.</summary>
    public bool GradientCheckpointing { get; set; }

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
        // cos / signed sin once per forward, shared by every layer.
        var (cos, sin) = _rotary.Compute(positionIds, inputsEmbeds.dtype);
        var signedSin = RotaryEmbedding.SignedSin(sin);
        var x = inputsEmbeds;
        bool checkpointed = GradientCheckpointing && cache is null && torch.is_grad_enabled();
        foreach (var layer in layers)
            x = checkpointed ? CheckpointedDecoderLayer.apply(layer, x, cos, signedSin) : layer.forward(x, cos, signedSin, cache);
        cache?.Advance(length);
        return norm.forward(x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One cached decode step through <see cref="Qwen2DecodeScript"/>: ids [B] (the tokens just chosen), rope_deltas [B]
    /// int64 on the model's device → logits [B, 1, vocab] through <paramref name="headWeight"/>; the same result as
    /// <see cref="EmbedTokens"/> + <see cref="forward"/> + the head. With <paramref name="graph"/> (CUDA) the script is
    /// captured once per cache (<see cref="Qwen2DecodeGraph"/>) and each step replays it; the logits are then a view
    /// the next step overwrites. Otherwise each step is one TorchScript call.
    /// </summary>
    internal Tensor DecodeStepScripted(Tensor ids, Tensor ropeDeltas, Qwen2KvCache cache, Tensor headWeight, bool graph)
    {
        if (cache.Length + 1 > _config.MaxPositionEmbeddings)
            throw new ArgumentException(
                $"The sequence would be {cache.Length + 1} tokens long, more than the model's max_position_embeddings ({_config.MaxPositionEmbeddings}).");
        var (keys, values) = cache.Reserve(1);
        var weights = new Tensor[3 + Qwen2DecodeScript.PerLayer * layers.Count];
        weights[0] = embed_tokens.Weight;
        weights[1] = norm.Weight;
        weights[2] = headWeight;
        for (int i = 0; i < layers.Count; i++) layers[i].CopyDecodeWeights(weights, 3 + Qwen2DecodeScript.PerLayer * i);
        var invFreq = _rotary.InverseFrequencies(ids.device);
        Tensor Step(Tensor stepIds, Tensor stepDeltas, Tensor position) =>
            Qwen2DecodeScript.Run(stepIds, stepDeltas, position, weights, keys, values, invFreq, _rotary.Section, _config);

        Tensor logits;
        if (graph)
        {
            Tensor[] read = [.. weights, invFreq, .. keys, .. values];
            if (cache.DecodeGraph is not { } captured || !captured.Reads(read))
            {
                cache.DecodeGraph?.Dispose();
                cache.DecodeGraph = null;
                cache.DecodeGraph = Qwen2DecodeGraph.Capture(Step, ids, ropeDeltas, cache.Length, read);
            }
            logits = cache.DecodeGraph.Step(ids, ropeDeltas, cache.Length);
        }
        else
        {
            using var position = torch.tensor(new[] { cache.Length }, ScalarType.Int64, ids.device);
            logits = Step(ids, ropeDeltas, position);
        }
        cache.Advance(1);
        return logits;
    }
}
