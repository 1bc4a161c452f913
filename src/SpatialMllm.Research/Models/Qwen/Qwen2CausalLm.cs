using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The language half of Qwen2.5-VL: the decoder (<c>model.</c>) and its LM head (<c>lm_head.</c>). With
/// <c>tie_word_embeddings</c> (Qwen2.5-VL-3B), as in transformers, <c>lm_head</c> is a Linear whose weight <em>is</em>
/// <c>model.embed_tokens.weight</c> (one Parameter: an edit of either is an edit of both), and the checkpoint has no
/// <c>lm_head.weight</c> (one that still stores it has it skipped, as transformers does).
/// </summary>
public sealed class Qwen2CausalLm : nn.Module
{
    public readonly Qwen2TextModel model;
    public readonly LmHead lm_head;

    public Qwen2CausalLm(Qwen2TextConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2CausalLm))
    {
        model = new Qwen2TextModel(config, device, dtype);
        lm_head = new LmHead(config.TieWordEmbeddings ? model.embed_tokens.weight : UntiedHeadWeight(config, device, dtype));
        RegisterComponents();
        FastPath = new Qwen2DecodeFastPath(model, () => lm_head.weight);
    }

    public Qwen2TextConfig Config => model.Config;

    /// <summary>An untied head's own [vocab, hidden] weight, initialised as transformers' <c>_init_weights</c> does (the
    /// checkpoint overwrites it).</summary>
    static Parameter UntiedHeadWeight(Qwen2TextConfig config, Device? device, ScalarType? dtype)
    {
        var weight = nn.Parameter(torch.empty([config.VocabSize, config.HiddenSize], dtype, device));
        using (torch.no_grad()) nn.init.normal_(weight, 0.0, 0.02);
        return weight;
    }

    /// <summary>Whether <c>lm_head.weight</c> is <c>model.embed_tokens.weight</c> (tied, and not re-assigned since).</summary>
    public bool WordEmbeddingsTied => lm_head.weight.Handle == model.embed_tokens.weight.Handle;

    /// <summary>
    /// Loads <c>model.*</c> and (untied) <c>lm_head.*</c>; other prefixes (visual, spatial encoder, connector) are
    /// skipped. A tied checkpoint that still stores <c>lm_head.weight</c> has it skipped too, as transformers does.
    /// </summary>
    internal LoadReport LoadFrom(Checkpoint checkpoint) =>
        StateDictLoader.Load(this, checkpoint, "", key => !key.StartsWith("model.", StringComparison.Ordinal)
            && !(!WordEmbeddingsTied && key.StartsWith("lm_head.", StringComparison.Ordinal)));

    /// <summary>
    /// <c>module.to(..)</c>: TorchSharp converts a module by replacing (and disposing) each of its parameters, which a
    /// Parameter shared by two modules does not survive. Tied, the decoder is converted and the head given its new
    /// embedding (PyTorch converts in place, so ties survive there too).
    /// </summary>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        if (!WordEmbeddingsTied)
        {
            base._toEpilog(dtype, device, non_blocking);
            return;
        }
        if (device is null) model.to(dtype!.Value, non_blocking);
        else if (dtype is null) model.to(device, non_blocking);
        else model.to(device, dtype.Value, non_blocking);
        lm_head.weight = model.embed_tokens.weight;
    }

    /// <summary>
    /// inputs_embeds [B, L, hidden] + position_ids [3, B, L] → logits [B, L, vocab] in the model dtype, or [B, 1, vocab]
    /// for the last position only (what generation needs; skips the vocab projection of the rest).
    /// </summary>
    public Tensor forward(Tensor inputsEmbeds, Tensor positionIds, Qwen2KvCache? cache = null, bool lastPositionOnly = false)
    {
        using var scope = torch.NewDisposeScope();
        var hidden = model.forward(inputsEmbeds, positionIds, cache);
        if (lastPositionOnly) hidden = hidden.narrow(1, hidden.shape[1] - 1, 1);
        var logits = lm_head.forward(hidden);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>How cached decode steps run; null: <see cref="DecodeStepMode.CudaGraph"/> on CUDA where libtorch exports
    /// the graph API (else <see cref="DecodeStepMode.Scripted"/>), <see cref="DecodeStepMode.Eager"/> elsewhere.</summary>
    internal DecodeStepMode? DecodeMode { get; set; }

    internal DecodeStepMode ResolveDecodeMode(Device device) => DecodeMode
        ?? (device.type != DeviceType.CUDA ? DecodeStepMode.Eager
            : CudaGraph.Supported ? DecodeStepMode.CudaGraph : DecodeStepMode.Scripted);

    /// <summary>
    /// One cached decode step: next [B] (the tokens just chosen), rope_deltas [B] → logits [B, 1, vocab]. Decoded tokens
    /// sit at cache length + rope delta on all three M-RoPE axes. Under <see cref="DecodeStepMode.CudaGraph"/> the logits
    /// are a view of the graph's output that the next step overwrites.
    /// </summary>
    internal Tensor DecodeStep(Tensor next, Tensor ropeDeltas, Qwen2KvCache cache)
    {
        using var scope = torch.NewDisposeScope();
        var deltas = ropeDeltas.to(ScalarType.Int64, next.device);
        // A hook on a decoder point must see every token, and an active LoRA adapter add its update: only the eager path does.
        var mode = model.HasHooks || model.HasActiveAdapters ? DecodeStepMode.Eager : ResolveDecodeMode(next.device);
        if (mode != DecodeStepMode.Eager)
            return FastPath.Step(next, deltas, cache, graph: mode == DecodeStepMode.CudaGraph).MoveToOuterDisposeScope();
        long batch = next.shape[0];
        var position = (deltas + cache.Length).view(1, batch, 1).expand(3, batch, 1);
        return forward(model.EmbedTokens(next.unsqueeze(1)), position, cache, lastPositionOnly: true).MoveToOuterDisposeScope();
    }

    /// <summary>The scripted / CUDA-graph decode step, and the KV cache kept between generations.</summary>
    internal Qwen2DecodeFastPath FastPath { get; }

    protected override void Dispose(bool disposing)
    {
        if (disposing) FastPath.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>
    /// embed(input_ids) with the rows at <paramref name="tokenId"/> (e.g. <c>video_token_id</c>) replaced, in order, by
    /// <paramref name="visualEmbeds"/> [n, hidden] (transformers' masked_scatter). input_ids [B, L] → [B, L, hidden].
    /// </summary>
    public Tensor EmbedWithVisualTokens(Tensor inputIds, Tensor visualEmbeds, int tokenId)
    {
        using var scope = torch.NewDisposeScope();
        var embeds = model.EmbedTokens(inputIds);
        var isVisual = inputIds == tokenId;
        long slots = isVisual.sum().item<long>();
        if (visualEmbeds.dim() != 2 || slots != visualEmbeds.shape[0] || visualEmbeds.shape[1] != embeds.shape[2])
            throw new ArgumentException(
                $"input_ids has {slots} tokens with id {tokenId} but the visual embeddings are [{string.Join(", ", visualEmbeds.shape)}]; " +
                $"expected [{slots}, {embeds.shape[2]}]. The prompt's video_pad count must equal the vision tower's output rows.");
        var mask = isVisual.unsqueeze(-1).expand_as(embeds);
        return embeds.masked_scatter(mask, visualEmbeds.to(embeds.dtype, embeds.device)).MoveToOuterDisposeScope();
    }
}

/// <summary>How <see cref="Qwen2CausalLm"/> runs a cached decode step.</summary>
internal enum DecodeStepMode
{
    /// <summary>TorchSharp ops, one host call each (CPU default).</summary>
    Eager,
    /// <summary>One TorchScript call a step (<see cref="Qwen2DecodeFastPath"/>).</summary>
    Scripted,
    /// <summary>The TorchScript step captured once per cache as a CUDA graph and replayed (CUDA default).</summary>
    CudaGraph,
}
