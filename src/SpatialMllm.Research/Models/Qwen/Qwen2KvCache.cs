using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Per-layer key/value buffers [B, kv_heads, capacity, head_dim], allocated once (on the first write, with the
/// keys' dtype and device, zero-filled so that unwritten slots hold finite numbers for masked attention) and filled in
/// place, so a decode step copies only its own token. When a write would pass the capacity the buffers double
/// (amortised O(1) per token). Owns its buffers and the decode graph captured over them: dispose it after generation.
/// </summary>
public sealed class Qwen2KvCache : IDisposable
{
    readonly Tensor?[] _keys;
    readonly Tensor?[] _values;
    readonly long[] _capacity;
    readonly long _initialCapacity;

    /// <param name="numLayers">Decoder layers.</param>
    /// <param name="capacity">Tokens to reserve (prompt + max new tokens avoids any regrowth).</param>
    public Qwen2KvCache(int numLayers, long capacity)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "must be positive");
        _keys = new Tensor?[numLayers];
        _values = new Tensor?[numLayers];
        _capacity = new long[numLayers];
        _initialCapacity = capacity;
    }

    bool _keepsGraph;

    /// <summary>
    /// A cache whose keys and values keep their autograd graph, for a training forward that reuses them (GRPO's K
    /// completions attending to one forward of their shared prompt: the gradient reaches the prompt's tokens through
    /// its keys and values). Each forward's keys/values are concatenated to the cached ones (torch.cat, as transformers'
    /// DynamicCache does) instead of copied into preallocated buffers; <see cref="ExpandRows"/> turns one sequence into
    /// several. Not for decoding.
    /// </summary>
    internal static Qwen2KvCache KeepingGraph(int numLayers) => new(numLayers, 1) { _keepsGraph = true };

    /// <summary>The one cached sequence viewed as <paramref name="rows"/> (a cache from <see cref="KeepingGraph"/>).</summary>
    internal void ExpandRows(long rows)
    {
        if (!_keepsGraph) throw new InvalidOperationException("Only a cache that keeps its graph expands its rows; copy a prefix with CopyPrefixFrom.");
        for (int layer = 0; layer < _keys.Length; layer++)
        {
            Tensor keys = _keys[layer] ?? throw new InvalidOperationException("The cache is empty."), values = _values[layer]!;
            if (keys.shape[0] != 1) throw new InvalidOperationException($"The cache holds {keys.shape[0]} sequences; only one expands.");
            _keys[layer] = keys.expand(rows, -1, -1, -1).DetachFromDisposeScope();
            _values[layer] = values.expand(rows, -1, -1, -1).DetachFromDisposeScope();
            keys.Dispose();
            values.Dispose();
        }
    }

    /// <summary>Tokens already cached (the position of the next token in the sequence).</summary>
    public long Length { get; private set; }

    /// <summary>
    /// Writes this step's keys/values [B, kv_heads, q_len, head_dim] after the cached ones and returns views of all
    /// of them [B, kv_heads, Length + q_len, head_dim]. <see cref="Length"/> moves on only at <see cref="Advance"/>,
    /// once every layer has written.
    /// </summary>
    internal (Tensor Keys, Tensor Values) Update(int layer, Tensor keys, Tensor values) => Update(layer, keys, values, keys.shape[2]);

    /// <summary><see cref="Update(int, Tensor, Tensor)"/> with the step's token count given (no shape query per layer).</summary>
    internal (Tensor Keys, Tensor Values) Update(int layer, Tensor keys, Tensor values, long tokens)
    {
        if (_keepsGraph) return Concatenate(layer, keys, values);
        long end = Length + tokens;
        if (_capacity[layer] < end || !Holds(_keys[layer], keys))
        {
            _capacity[layer] = Grow(ref _keys[layer], keys, end);
            Grow(ref _values[layer], values, end);
        }
        Tensor keyBuffer = _keys[layer]!, valueBuffer = _values[layer]!;
        using (var _ = torch.no_grad())
        {
            keyBuffer.narrow(2, Length, tokens).copy_(keys);
            valueBuffer.narrow(2, Length, tokens).copy_(values);
        }
        return (keyBuffer.narrow(2, 0, end), valueBuffer.narrow(2, 0, end));
    }

    /// <summary><see cref="Update(int, Tensor, Tensor, long)"/> of a cache that keeps its graph: the cached and the new
    /// keys/values concatenated along the sequence, kept, and returned as handles of the caller's scope.</summary>
    (Tensor Keys, Tensor Values) Concatenate(int layer, Tensor keys, Tensor values)
    {
        Tensor? cachedKeys = _keys[layer], cachedValues = _values[layer];
        var allKeys = cachedKeys is null ? keys.alias() : torch.cat([cachedKeys, keys], 2);
        var allValues = cachedValues is null ? values.alias() : torch.cat([cachedValues!, values], 2);
        _keys[layer] = allKeys.alias().DetachFromDisposeScope();
        _values[layer] = allValues.alias().DetachFromDisposeScope();
        cachedKeys?.Dispose();
        cachedValues?.Dispose();
        return (allKeys, allValues);
    }

    internal void Advance(long tokens) => Length += tokens;

    /// <summary>Empties the cache for a new sequence, keeping its buffers (and <see cref="DecodeGraph"/>) for reuse.</summary>
    internal void Reset()
    {
        Length = 0;
        DecodeGraphChecked = false;
        ShowAllSlots();
    }

    /// <summary>
    /// Empties the cache and fills its first slots with <paramref name="prefix"/>'s tokens (a shared prefix's snapshot of
    /// batch 1, only read), repeated for each of <paramref name="rows"/> sequences; keeps this cache's buffers (and decode
    /// graph) when they fit.
    /// </summary>
    internal void CopyPrefixFrom(Qwen2KvCache prefix, long rows = 1)
    {
        if (prefix._keys.Length != _keys.Length)
            throw new ArgumentException($"The prefix cache has {prefix._keys.Length} layers; this one {_keys.Length}.", nameof(prefix));
        Length = 0;
        DecodeGraphChecked = false;
        ShowAllSlots();
        long tokens = prefix.Length;
        using var _ = torch.no_grad();
        for (int layer = 0; layer < _keys.Length; layer++)
        {
            Tensor sourceKeys = prefix._keys[layer] ?? throw new InvalidOperationException("The prefix cache is empty."), sourceValues = prefix._values[layer]!;
            if (sourceKeys.shape[0] != 1) throw new ArgumentException($"The prefix cache holds {sourceKeys.shape[0]} sequences; a shared prefix is one.", nameof(prefix));
            // [1, kv_heads, capacity, d] viewed as [rows, …]: gives Holds/Grow the batch the buffers need, and copy_ repeats it.
            using var rowKeys = sourceKeys.expand(rows, -1, -1, -1);
            using var rowValues = sourceValues.expand(rows, -1, -1, -1);
            if (_capacity[layer] < tokens || !Holds(_keys[layer], rowKeys))
            {
                _capacity[layer] = Grow(ref _keys[layer], rowKeys, tokens);
                Grow(ref _values[layer], rowValues, tokens);
            }
            using (var target = _keys[layer]!.narrow(2, 0, tokens)) using (var source = rowKeys.narrow(2, 0, tokens)) target.copy_(source);
            using (var target = _values[layer]!.narrow(2, 0, tokens)) using (var source = rowValues.narrow(2, 0, tokens)) target.copy_(source);
        }
        Length = tokens;
    }

    Tensor? _keyMask;
    bool _hidesSlots;

    /// <summary>
    /// Hides slots from attention, row by row: <paramref name="visible"/> [B, n] bool, false where row b must not attend to
    /// slot <paramref name="start"/> + j (a batch of prompts that share a prefix but differ in length keeps each row's
    /// question right-aligned: the padding before a shorter question is hidden). Holds until <see cref="Reset"/> or
    /// <see cref="CopyPrefixFrom"/>.
    /// </summary>
    internal void HideSlots(long start, Tensor visible)
    {
        long rows = visible.shape[0], count = visible.shape[1];
        var mask = KeyMask(rows, start + count);
        using var _ = torch.no_grad();
        using var target = mask.narrow(1, start, count);
        target.copy_(visible);
        _hidesSlots = true;
    }

    /// <summary>[B, ≥ <paramref name="slots"/>] bool of the slots each row may attend to (all true unless
    /// <see cref="HideSlots"/> hid some), allocated once and kept at one address, so that a captured decode step reads it
    /// in place; it regrows with the buffers.</summary>
    internal Tensor KeyMask(long rows, long slots)
    {
        if (_keyMask is not null && _keyMask.shape[0] == rows && _keyMask.shape[1] >= slots) return _keyMask;
        if (_keyMask is not null && _keyMask.shape[0] != rows && _hidesSlots)
            throw new InvalidOperationException($"The cache hides slots for {_keyMask.shape[0]} rows; these are {rows}.");
        long capacity = Math.Max(slots, _capacity.Length > 0 ? _capacity[0] : slots);
        var grown = torch.ones([rows, capacity], ScalarType.Bool, _keys[0]?.device ?? torch.CPU).DetachFromDisposeScope();
        if (_keyMask is not null)
        {
            if (_keyMask.shape[0] == rows)
            {
                using var _ = torch.no_grad();
                using var kept = grown.narrow(1, 0, _keyMask.shape[1]);
                kept.copy_(_keyMask);
            }
            _keyMask.Dispose();
        }
        DecodeGraph?.Dispose();
        DecodeGraph = null;
        return _keyMask = grown;
    }

    /// <summary>The first <paramref name="slots"/> slots' visibility [B, slots] when <see cref="HideSlots"/> hid some, else
    /// null (attention needs no mask beyond causality).</summary>
    internal Tensor? HiddenSlotsMask(long slots) => _hidesSlots ? KeyMask(_keyMask!.shape[0], slots).narrow(1, 0, slots) : null;

    void ShowAllSlots()
    {
        if (!_hidesSlots) return;
        using var _ = torch.no_grad();
        _keyMask!.fill_(true);
        _hidesSlots = false;
    }

    /// <summary>Whether <paramref name="buffer"/> (null: none yet) can take <paramref name="step"/>'s batch, heads and
    /// head_dim, dtype and device (a reused cache may meet another batch size or dtype).</summary>
    static bool Holds(Tensor? buffer, Tensor step) =>
        buffer is not null && buffer.dtype == step.dtype && buffer.device_type == step.device_type && buffer.device_index == step.device_index
        && buffer.shape[0] == step.shape[0] && buffer.shape[1] == step.shape[1] && buffer.shape[3] == step.shape[3];

    /// <summary>The decode fast path's step captured over these buffers (CUDA; <see cref="Qwen2DecodeFastPath"/>);
    /// disposed with the cache or when the buffers regrow.</summary>
    internal IDisposable? DecodeGraph
    {
        get => _decodeGraph;
        set { _decodeGraph = value; DecodeGraphChecked = false; }
    }
    IDisposable? _decodeGraph;

    /// <summary>Whether this sequence's first decode step found <see cref="DecodeGraph"/> reading the weights where they
    /// lie (or captured it): the later steps of the sequence replay it unchecked. Cleared by <see cref="Reset"/>,
    /// <see cref="CopyPrefixFrom"/> and a new or disposed graph.</summary>
    internal bool DecodeGraphChecked { get; set; }

    /// <summary>
    /// Every layer's whole key and value buffers, grown to hold <paramref name="tokens"/> more, for a caller that writes
    /// them in place (<see cref="Qwen2DecodeFastPath"/>). Needs the buffers allocated (a first <see cref="Update(int, Tensor, Tensor)"/>).
    /// </summary>
    internal (Tensor[] Keys, Tensor[] Values) Reserve(long tokens)
    {
        if (_keepsGraph) throw new InvalidOperationException("A cache that keeps its graph is not for decoding.");
        long end = Length + tokens;
        for (int layer = 0; layer < _keys.Length; layer++)
        {
            if (_keys[layer] is null) throw new InvalidOperationException("The cache is empty: run the prompt through the model first.");
            if (_capacity[layer] < end)
            {
                _capacity[layer] = Grow(ref _keys[layer], _keys[layer]!, end);
                Grow(ref _values[layer], _values[layer]!, end);
            }
        }
        return (_keys.Select(t => t!).ToArray(), _values.Select(t => t!).ToArray());
    }

    /// <param name="step">Gives the batch, heads, head_dim, dtype and device of the buffer.</param>
    long Grow(ref Tensor? buffer, Tensor step, long needed)
    {
        if (buffer is not null && !Holds(buffer, step))
        {
            if (Length > 0) throw new InvalidOperationException(
                $"The cache holds {Length} tokens of shape [{string.Join(", ", buffer.shape)}] {buffer.dtype}; these are [{string.Join(", ", step.shape)}] {step.dtype}.");
            buffer.Dispose();
            buffer = null;
        }
        long capacity = Math.Max(needed, buffer is null ? _initialCapacity : 2 * buffer.shape[2]);
        DecodeGraph?.Dispose();
        DecodeGraph = null;
        var grown = torch.zeros([step.shape[0], step.shape[1], capacity, step.shape[3]], step.dtype, step.device).DetachFromDisposeScope();
        if (buffer is not null)
        {
            using var _ = torch.no_grad();
            using var kept = grown.narrow(2, 0, Length);
            using var old = buffer.narrow(2, 0, Length);
            kept.copy_(old);
            buffer.Dispose();
        }
        buffer = grown;
        return capacity;
    }

    public void Dispose()
    {
        DecodeGraph?.Dispose();
        DecodeGraph = null;
        foreach (var t in _keys) t?.Dispose();
        foreach (var t in _values) t?.Dispose();
        _keyMask?.Dispose();
        _keyMask = null;
        _hidesSlots = false;
        Array.Clear(_keys);
        Array.Clear(_values);
        Array.Clear(_capacity);
        Length = 0;
    }
}
