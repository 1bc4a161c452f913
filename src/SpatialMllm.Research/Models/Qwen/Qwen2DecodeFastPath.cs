using TorchSharp;
using static TorchSharp.torch;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The decode fast path of one <see cref="Qwen2CausalLm"/>, in one place: the weights packed in the order the script reads
/// them, the TorchScript step, its CUDA graph, and the KV cache kept from one generation to the next.
/// <para>
/// One cached decode step (embedding → every decoder layer → final norm → LM head) is a single TorchScript call with
/// static shapes: the token's slot is a device tensor, keys/values are written with <c>index_copy_</c> and attention
/// covers the cache's whole capacity under a mask of the filled slots. Nothing in it reads a value on the host or
/// changes shape from one token to the next, so on CUDA it is captured once per cache into a <see cref="CudaGraph"/> and
/// replayed for every token: eager decode is host-bound (~1250 libtorch ops a token at 5–10 µs of host time each against
/// ~5 ms of GPU work), a replay is three small copies and one launch. The script repeats the eager ops and their
/// rounding order (<see cref="Qwen2RmsNorm"/>, fused on CUDA as there; <see cref="Qwen2Attention"/>'s q_len 1 path,
/// <see cref="Qwen2SwiGluMlp"/>, <see cref="MultimodalRotaryEmbedding"/>); only the attention differs in summing the
/// masked slots' zero weights. The attention keeps the query heads as heads (<c>enable_gqa</c>) rather than folding
/// each group into the query length as the eager path does: under a mask the folded form (two "heads" of 8 queries)
/// leaves cuDNN's kernel with two thread blocks, 2.8 against 0.5 ms a token for 36 layers on an H100.
/// </para>
/// </summary>
internal sealed class Qwen2DecodeFastPath : IDisposable
{
    /// <summary>The weight list: [embed, final norm, head], then per layer <see cref="PerLayer"/> tensors in
    /// <see cref="PackWeights"/>' order. The script below reads the same layout.</summary>
    const int SharedTensors = 3;
    const int PerLayer = 8;

    /// <summary>
    /// weights: see <see cref="PackWeights"/>. keys/values: the cache buffers [B, kv_heads, capacity, d], written in
    /// place at slot <c>position</c> [1]; slots past it are masked out (they must hold finite numbers: the cache
    /// zero-fills its buffers), and so are those key_mask [B, ≥ capacity] hides (<see cref="Qwen2KvCache.HideSlots"/>).
    /// </summary>
    static readonly string Source = $$"""
def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    if x.is_cuda and x.dtype == weight.dtype and x.element_size() == 2:  # bf16/fp16: see Qwen2RmsNorm
        return torch.rms_norm(x, [x.size(-1)], weight, eps)
    xf = x.float()
    scale = xf.pow(2).mean([-1], keepdim=True).add_(eps).rsqrt_()
    normed = (xf * scale).to(x.dtype)
    if normed.dtype != weight.dtype:
        return weight * normed
    return normed.mul_(weight)

def rotary_tables(rope_deltas: Tensor, position: Tensor, inv_freq: Tensor, s0: int, s1: int, s2: int, like: Tensor) -> Tensor:
    # [cos, signed sin] [2, B, d] in like's dtype at each row's position (M-RoPE: a text token's t, h and w are equal).
    batch = rope_deltas.size(0)
    positions = (rope_deltas + position).view(1, batch, 1).expand(3, batch, 1)
    freqs = positions.float().unsqueeze(-1) * inv_freq
    mixed = torch.cat([freqs[0].narrow(-1, 0, s0), freqs[1].narrow(-1, s0, s1), freqs[2].narrow(-1, s0 + s1, s2)], -1)
    emb = torch.cat([mixed, mixed], -1).view(batch, -1)
    cos = emb.cos().to(like.dtype)
    sin = emb.sin().to(like.dtype)
    half = emb.size(1) // 2
    return torch.stack([cos, torch.cat([sin.narrow(-1, 0, half).neg(), sin.narrow(-1, half, half)], -1)])

def visible_slots(position: Tensor, key_mask: Tensor, batch: int, capacity: int) -> Tensor:
    return torch.arange(capacity, device=position.device).le(position).view(1, 1, 1, -1).logical_and(key_mask.narrow(1, 0, capacity).view(batch, 1, 1, capacity))

def slot_bias(position: Tensor, key_mask: Tensor, batch: int, capacity: int, like: Tensor) -> Tensor:
    visible = visible_slots(position, key_mask, batch, capacity)
    return torch.zeros([batch, 1, 1, capacity], dtype=like.dtype, device=like.device).masked_fill_(visible.logical_not(), float("-inf"))

def decode_step(ids: Tensor, rope_deltas: Tensor, position: Tensor, weights: List[Tensor], keys: List[Tensor], values: List[Tensor],
                key_mask: Tensor, inv_freq: Tensor, s0: int, s1: int, s2: int, heads: int, kv_heads: int, d: int, eps: float) -> Tensor:
    embed = weights[0]
    batch = ids.size(0)
    x = embed.index_select(0, ids.flatten()).view(batch, 1, embed.size(1))
    tables = rotary_tables(rope_deltas, position, inv_freq, s0, s1, s2, x)
    cos = tables[0].view(batch, 1, 1, d)
    signed_sin = tables[1].view(batch, 1, 1, d)
    half = d // 2
    q_width = heads * d
    kv_width = kv_heads * d
    capacity = keys[0].size(2)
    visible = visible_slots(position, key_mask, batch, capacity)
    for i in range(len(keys)):
        o = {{SharedTensors}} + {{PerLayer}} * i
        h = rms_norm(x, weights[o], eps)
        qkv = torch.linear(h, weights[o + 1], weights[o + 2])
        qk = qkv.narrow(-1, 0, q_width + kv_width).view(batch, 1, heads + kv_heads, d).transpose(1, 2)
        swapped = qk.view(batch, heads + kv_heads, 1, 2, half).flip(-2).view(batch, heads + kv_heads, 1, d)
        rotated = qk * cos
        rotated.add_(swapped.mul_(signed_sin))
        q = rotated.narrow(1, 0, heads)
        k = rotated.narrow(1, heads, kv_heads)
        v = qkv.narrow(-1, q_width + kv_width, kv_width).view(batch, 1, kv_heads, d).transpose(1, 2)
        key_buffer = keys[i]
        value_buffer = values[i]
        key_buffer.index_copy_(2, position, k)
        value_buffer.index_copy_(2, position, v)
        merged = torch.scaled_dot_product_attention(q, key_buffer, value_buffer, attn_mask=visible, enable_gqa=True).reshape(batch, 1, q_width)
        h = torch.linear(merged, weights[o + 3]).add_(x)
        n = rms_norm(h, weights[o + 4], eps)
        gated = torch.silu_(torch.linear(n, weights[o + 5])).mul_(torch.linear(n, weights[o + 6]))
        x = torch.linear(gated, weights[o + 7]).add_(h)
    return torch.linear(rms_norm(x, weights[1], eps), weights[2])


def attend(q: Tensor, keys: Tensor, values: Tensor, slot_bias: Tensor) -> Tensor:
    return torch.scaled_dot_product_attention(q, keys, values, attn_mask=slot_bias, enable_gqa=True).reshape(q.size(0), -1)

""";

    static readonly Lazy<jit.CompilationUnit> Unit = new(() => jit.compile(Source));

    readonly Qwen2TextModel _model;
    readonly Func<Tensor> _headWeight;
    Qwen2KvCache? _retainedCache;

    /// <param name="headWeight">The LM head's weight (the embedding table when tied), read at each step.</param>
    internal Qwen2DecodeFastPath(Qwen2TextModel model, Func<Tensor> headWeight) => (_model, _headWeight) = (model, headWeight);

    /// <summary>
    /// The flattened weights in the script's order: [embed_tokens, norm, head] + per layer [input_layernorm,
    /// cat(q, k, v) weight, cat(q, k, v) bias, o_proj, post_attention_layernorm, gate_proj, up_proj, down_proj].
    /// </summary>
    Tensor[] PackWeights()
    {
        var layers = _model.layers;
        var weights = new Tensor[SharedTensors + PerLayer * layers.Count];
        weights[0] = _model.embed_tokens.Weight;
        weights[1] = _model.norm.Weight;
        weights[2] = _headWeight();
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            var (qkvWeight, qkvBias) = layer.self_attn.Fused.QkvWeights();
            var (gate, up, down) = layer.mlp.Weights;
            int o = SharedTensors + PerLayer * i;
            weights[o] = layer.input_layernorm.Weight;
            weights[o + 1] = qkvWeight;
            weights[o + 2] = qkvBias;
            weights[o + 3] = layer.self_attn.o_proj.weight!;
            weights[o + 4] = layer.post_attention_layernorm.Weight;
            weights[o + 5] = gate;
            weights[o + 6] = up;
            weights[o + 7] = down;
        }
        return weights;
    }

    /// <summary>
    /// One cached decode step: ids [B] (the tokens just chosen), rope_deltas [B] int64 on the model's device → logits
    /// [B, 1, vocab]; the same result as <see cref="Qwen2TextModel.EmbedTokens"/> + <see cref="Qwen2TextModel.forward"/>
    /// + the head. With <paramref name="graph"/> (CUDA) the script is captured once per cache and each step replays it;
    /// the logits are then a view the next step overwrites. Otherwise each step is one TorchScript call.
    /// </summary>
    public Tensor Step(Tensor ids, Tensor ropeDeltas, Qwen2KvCache cache, bool graph)
    {
        var config = _model.Config;
        if (cache.Length + 1 > config.MaxPositionEmbeddings)
            throw new ArgumentException(
                $"The sequence would be {cache.Length + 1} tokens long, more than the model's max_position_embeddings ({config.MaxPositionEmbeddings}).");
        var (keys, values) = cache.Reserve(1);
        var keyMask = cache.KeyMask(ids.shape[0], keys[0].shape[2]);
        // Within one generation nothing can move a weight between steps (a hook, the one place user code runs then, makes
        // decoding eager): the graph's weights are checked at its first step only, which keeps ~600 native calls a token
        // off the replay (Qwen2KvCache.DecodeGraphChecked; cleared when the cache starts another sequence).
        if (graph && cache.DecodeGraphChecked && cache.DecodeGraph is CapturedStep checkedGraph)
        {
            var replayed = checkedGraph.Step(ids, ropeDeltas, cache.Length);
            cache.Advance(1);
            return replayed;
        }
        var weights = PackWeights();
        var rotary = _model.rotary_emb;
        var invFreq = rotary.InverseFrequencies(ids.device);
        Func<Tensor, Tensor, Tensor, Tensor> Run = (stepIds, stepDeltas, position) =>
            (Tensor)Unit.Value.invoke("decode_step", stepIds, stepDeltas, position, weights, keys, values, keyMask, invFreq,
                (long)rotary.Section[0], (long)rotary.Section[1], (long)rotary.Section[2],
                (long)config.NumAttentionHeads, (long)config.NumKeyValueHeads, (long)config.HeadDim, config.RmsNormEps);
        bool kernels = graph && Qwen2DecodeKernels.Serve(ids.device, weights[0].dtype, ids.shape[0], config.HiddenSize, config.IntermediateSize, config.HeadDim);
        if (kernels) Run = (stepIds, stepDeltas, position) => KernelStep(stepIds, stepDeltas, position, weights, keys, values, keyMask, invFreq);

        Tensor logits;
        if (graph)
        {
            Tensor[] read = [.. weights, invFreq, .. keys, .. values, keyMask];
            if (cache.DecodeGraph is not CapturedStep captured || !captured.Reads(read) || captured.UsesKernels != kernels)
            {
                cache.DecodeGraph?.Dispose();
                cache.DecodeGraph = null;
                cache.DecodeGraph = captured = CapturedStep.Capture(Run, ids, ropeDeltas, cache.Length, read, kernels);
            }
            cache.DecodeGraphChecked = true;
            logits = captured.Step(ids, ropeDeltas, cache.Length);
        }
        else
        {
            using var position = torch.tensor(new[] { cache.Length }, ScalarType.Int64, ids.device);
            logits = Run(ids, ropeDeltas, position);
        }
        cache.Advance(1);
        return logits;
    }

    /// <summary>
    /// The script's step as the bf16 CUDA kernels compute it (<see cref="Qwen2DecodeKernels"/>; only ever captured into the
    /// decode graph, where its ~250 launches are replayed at once): per layer the QKV GEMV with input_layernorm fused in,
    /// RoPE with the cache write, the same SDPA as the script, o_proj with the residual, gate/up with
    /// post_attention_layernorm and SwiGLU, down_proj with the residual. Same arguments and result as the script.
    /// </summary>
    Tensor KernelStep(Tensor ids, Tensor ropeDeltas, Tensor position, Tensor[] weights, Tensor[] keys, Tensor[] values, Tensor keyMask, Tensor invFreq)
    {
        using var scope = torch.NewDisposeScope();
        var config = _model.Config;
        var section = _model.rotary_emb.Section;
        int heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads, d = config.HeadDim;
        double eps = config.RmsNormEps;
        long batch = ids.shape[0], capacity = keys[0].shape[2];
        var unit = Unit.Value;
        var x = weights[0].index_select(0, ids.flatten());   // [B, hidden]
        var tables = (Tensor)unit.invoke("rotary_tables", ropeDeltas, position, invFreq, (long)section[0], (long)section[1], (long)section[2], x);
        Tensor cos = tables[0], signedSin = tables[1];   // [B, d] each
        // The mask as the additive bias SDPA makes of a boolean one (0 or −inf), made once for all layers.
        var slotBias = (Tensor)unit.invoke("slot_bias", position, keyMask, batch, capacity, x);
        for (int i = 0; i < keys.Length; i++)
        {
            int o = SharedTensors + PerLayer * i;
            var qkv = Qwen2DecodeKernels.Linear(x, weights[o + 1], bias: weights[o + 2], normWeight: weights[o], eps: eps);
            var q = Qwen2DecodeKernels.RotateAndCache(qkv, cos, signedSin, position, keys[i], values[i], heads, kvHeads, d);   // [B, heads, 1, d]
            var merged = ((Tensor)unit.invoke("attend", q, keys[i], values[i], slotBias)).contiguous();   // [B, heads·d]
            var h = Qwen2DecodeKernels.Linear(merged, weights[o + 3], residual: x);
            var gated = Qwen2DecodeKernels.SwiGlu(h, weights[o + 5], weights[o + 6], weights[o + 4], eps);
            x = Qwen2DecodeKernels.Linear(gated, weights[o + 7], residual: h);
        }
        return Qwen2DecodeKernels.Linear(x, weights[2], normWeight: weights[1], eps: eps).view(batch, 1, -1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A cache for one generation: the one the previous generation handed back (<see cref="ReturnCache"/>) when there is
    /// one — its buffers and, on CUDA, its captured decode graph are reused, so generating the answer to another question
    /// does not capture again — else a new one reserving <paramref name="capacity"/> tokens.
    /// </summary>
    public Qwen2KvCache RentCache(long capacity)
    {
        var cache = Interlocked.Exchange(ref _retainedCache, null);
        if (cache is null) return new Qwen2KvCache(_model.Config.NumHiddenLayers, capacity);
        cache.Reset();
        return cache;
    }

    /// <summary>Keeps a cache with a captured decode graph for the next generation (replacing any kept one); disposes
    /// others, whose buffers are cheap to allocate again.</summary>
    public void ReturnCache(Qwen2KvCache cache)
    {
        if (cache.DecodeGraph is null) { cache.Dispose(); return; }
        Interlocked.Exchange(ref _retainedCache, cache)?.Dispose();
    }

    public void Dispose() => Interlocked.Exchange(ref _retainedCache, null)?.Dispose();

    /// <summary>
    /// The step captured once as a CUDA graph over one cache's buffers, then replayed for every token. Stored in the
    /// cache whose buffers it writes (<see cref="Qwen2KvCache.DecodeGraph"/>), which disposes it when it regrows or is
    /// disposed. The graph reads the weights and writes the buffers at the addresses of the capture: <see cref="Reads"/>
    /// tells whether it still can (the same tensors), else the caller captures anew.
    /// </summary>
    sealed class CapturedStep : IDisposable
    {
        readonly CudaGraph _graph;
        readonly Tensor _ids;          // [B] int64: the tokens just chosen
        readonly Tensor _ropeDeltas;   // [B] int64
        readonly Tensor _position;     // [1] int64: their cache slot
        readonly Tensor _logits;       // [B, 1, vocab]: what each replay overwrites
        readonly IntPtr[] _captured;   // where the tensors it reads and writes lie: weights, keys, values

        CapturedStep(CudaGraph graph, Tensor ids, Tensor ropeDeltas, Tensor position, Tensor logits, IntPtr[] captured, bool usesKernels)
        {
            (_graph, _ids, _ropeDeltas, _position, _logits, _captured) = (graph, ids, ropeDeltas, position, logits, captured);
            UsesKernels = usesKernels;
        }

        /// <summary>Whether the captured step is <see cref="KernelStep"/> rather than the script (kernels turned off, or
        /// unavailable for a batch size, capture anew).</summary>
        public bool UsesKernels { get; }

        /// <summary>
        /// Captures <paramref name="step"/> (ids, rope deltas, position → logits) over fresh input tensors shaped like
        /// <paramref name="ids"/> / <paramref name="ropeDeltas"/>. <paramref name="tensors"/>: every tensor the step reads or
        /// writes besides those inputs (weights, tables, cache buffers); they must outlive the graph.
        /// </summary>
        public static CapturedStep Capture(Func<Tensor, Tensor, Tensor, Tensor> step, Tensor ids, Tensor ropeDeltas, long position,
            IEnumerable<Tensor> tensors, bool usesKernels)
        {
            var device = ids.device;
            var idsInput = ids.to(ScalarType.Int64).clone().DetachFromDisposeScope();
            var deltasInput = ropeDeltas.to(ScalarType.Int64, device).clone().DetachFromDisposeScope();
            var positionInput = torch.tensor(new[] { position }, ScalarType.Int64, device).DetachFromDisposeScope();
            try
            {
                // Warm-up runs write this step's own keys/values at this slot, as the replay then does again.
                var (graph, logits) = CudaGraph.Capture(device, () => step(idsInput, deltasInput, positionInput));
                return new CapturedStep(graph, idsInput, deltasInput, positionInput, logits.DetachFromDisposeScope(),
                    tensors.Select(Location).ToArray(), usesKernels);
            }
            catch
            {
                idsInput.Dispose();
                deltasInput.Dispose();
                positionInput.Dispose();
                throw;
            }
        }

        /// <summary>
        /// Whether the graph reads these tensors where they now lie, in this order. The graph reads memory, not tensors: a
        /// weight edited in place (an optimizer step, <c>load_state_dict</c>) is read as it now is, while one that moved —
        /// a new <c>Parameter</c>, <c>module.to(..)</c>, a cache that regrew — needs a new capture.
        /// </summary>
        public bool Reads(IReadOnlyList<Tensor> tensors) =>
            tensors.Count == _captured.Length && tensors.Select(Location).SequenceEqual(_captured);

        static IntPtr Location(Tensor tensor) => TensorAddress.Of(tensor);

        /// <summary>
        /// One step: ids [B], rope_deltas [B] and the cache slot → logits [B, 1, vocab], a view of the graph's output that the
        /// next step overwrites (copy it to keep it).
        /// </summary>
        public Tensor Step(Tensor ids, Tensor ropeDeltas, long position)
        {
            using (torch.no_grad())
            {
                _ids.copy_(ids);
                _ropeDeltas.copy_(ropeDeltas);
                _position.fill_(position);
            }
            _graph.Replay();
            return _logits.view(_logits.shape);
        }

        public void Dispose()
        {
            _logits.Dispose();
            _graph.Dispose();
            _ids.Dispose();
            _ropeDeltas.Dispose();
            _position.Dispose();
        }
    }
}
