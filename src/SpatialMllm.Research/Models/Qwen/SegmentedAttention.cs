using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Variable-length ("cu_seqlens") attention without a varlen kernel: the packed token sequence is cut into segments
/// that attend only within themselves, and segments of equal length are batched into one SDPA call of shape
/// [segments, heads, length, head_dim]. A Qwen2.5-VL video has at most four window sizes (interior, right edge, bottom
/// edge, corner) and one slice size, so a block costs one to four unmasked SDPA calls, which stay eligible for the
/// flash kernel (a block-diagonal mask would not).
/// </summary>
internal sealed class SegmentedAttention : IDisposable
{
    readonly Tensor? _gather;
    readonly Tensor? _restore;
    readonly (int Count, int Length)[] _groups;

    /// <param name="order">Token positions in the order that makes each group of equal-length segments contiguous;
    /// null when the tokens are already in that order.</param>
    /// <param name="groups">Consecutive groups of <c>Count</c> segments of <c>Length</c> tokens each.</param>
    public SegmentedAttention(long[]? order, (int Count, int Length)[] groups, Device device)
    {
        _groups = groups;
        if (order == null) return;
        var restore = new long[order.Length];
        for (int i = 0; i < order.Length; i++) restore[order[i]] = i;
        _gather = torch.tensor(order, device: device).DetachFromDisposeScope();
        _restore = torch.tensor(restore, device: device).DetachFromDisposeScope();
    }

    /// <summary>
    /// The segments of transformers' <c>cu_seqlens</c> (boundaries [segments + 1], from 0 to <paramref name="tokens"/>,
    /// non-decreasing; an empty segment, as <c>get_window_index</c>'s padding makes, attends nothing), batched by length.
    /// </summary>
    public static SegmentedAttention FromCuSeqlens(Tensor cuSeqlens, long tokens, Device device)
    {
        if (cuSeqlens.dim() != 1 || cuSeqlens.shape[0] < 2 || cuSeqlens.is_floating_point())
            throw new ArgumentException($"cu_seqlens must be a 1-D integer tensor of segment boundaries [segments + 1], got {cuSeqlens.dtype} [{string.Join(", ", cuSeqlens.shape)}].", nameof(cuSeqlens));
        using var host = cuSeqlens.to(ScalarType.Int64).cpu();
        var bounds = host.data<long>().ToArray();
        if (bounds[0] != 0 || bounds[^1] != tokens || bounds.Zip(bounds.Skip(1)).Any(p => p.Second < p.First))
            throw new ArgumentException(
                $"cu_seqlens must rise from 0 to the token count {tokens} without going down, got [{string.Join(", ", bounds)}].", nameof(cuSeqlens));
        // Segments of one length in the order they come; the gather only where that is not already the token order.
        var byLength = new Dictionary<long, List<long>>();
        var lengths = new List<long>();
        for (int i = 0; i + 1 < bounds.Length; i++)
        {
            long length = bounds[i + 1] - bounds[i];
            if (length == 0) continue;
            if (!byLength.TryGetValue(length, out var starts)) { byLength[length] = starts = []; lengths.Add(length); }
            starts.Add(bounds[i]);
        }
        var order = lengths.SelectMany(length => byLength[length].SelectMany(start => Enumerable.Range(0, (int)length).Select(j => start + j))).ToArray();
        var groups = lengths.Select(length => (byLength[length].Count, checked((int)length))).ToArray();
        bool inOrder = order.Select((position, i) => position == i).All(same => same);
        return new SegmentedAttention(inOrder ? null : order, groups, device);
    }

    /// <summary>q, k, v: [tokens, heads, head_dim] → [tokens, heads·head_dim].</summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v)
    {
        using var scope = torch.NewDisposeScope();
        if (_gather is not null)
        {
            q = q.index_select(0, _gather);
            k = k.index_select(0, _gather);
            v = v.index_select(0, _gather);
        }
        long heads = q.shape[1], headDim = q.shape[2];
        var outputs = new List<Tensor>(_groups.Length);
        long offset = 0;
        foreach (var (count, length) in _groups)
        {
            long tokens = (long)count * length;
            // [count·length, heads, d] → [count, heads, length, d]
            Tensor Segments(Tensor x) => x.narrow(0, offset, tokens).reshape(count, length, heads, headDim).transpose(1, 2);
            var attended = nn.functional.scaled_dot_product_attention(Segments(q), Segments(k), Segments(v));
            outputs.Add(attended.transpose(1, 2).reshape(tokens, heads * headDim));
            offset += tokens;
        }
        var output = outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 0);
        if (_restore is not null) output = output.index_select(0, _restore);
        return output.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _gather?.Dispose();
        _restore?.Dispose();
    }
}
