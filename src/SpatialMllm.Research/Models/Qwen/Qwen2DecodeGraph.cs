using TorchSharp;
using static TorchSharp.torch;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// <see cref="Qwen2DecodeScript"/>'s step captured once as a CUDA graph over one cache's buffers, then replayed for every
/// token: a step is three small copies into the graph's input tensors and one launch. Belongs to the
/// <see cref="Qwen2KvCache"/> whose buffers it writes (<see cref="Qwen2KvCache.DecodeGraph"/>), which disposes it. The
/// graph reads the weights and writes the buffers at the addresses of the capture: <see cref="Reads"/> tells whether it
/// still can (the same tensors), else the caller captures anew.
/// </summary>
internal sealed class Qwen2DecodeGraph : IDisposable
{
    readonly CudaGraph _graph;
    readonly Tensor _ids;          // [B] int64: the tokens just chosen
    readonly Tensor _ropeDeltas;   // [B] int64
    readonly Tensor _position;     // [1] int64: their cache slot
    readonly Tensor _logits;       // [B, 1, vocab]: what each replay overwrites
    readonly IntPtr[] _captured;   // the native tensors the graph reads and writes: weights, keys, values

    Qwen2DecodeGraph(CudaGraph graph, Tensor ids, Tensor ropeDeltas, Tensor position, Tensor logits, IntPtr[] captured)
    {
        (_graph, _ids, _ropeDeltas, _position, _logits, _captured) = (graph, ids, ropeDeltas, position, logits, captured);
    }

    /// <summary>
    /// Captures <paramref name="step"/> (ids, rope deltas, position → logits) over fresh input tensors shaped like
    /// <paramref name="ids"/> / <paramref name="ropeDeltas"/>. <paramref name="tensors"/>: every tensor the step reads or
    /// writes besides those inputs (weights, tables, cache buffers); they must outlive the graph.
    /// </summary>
    public static Qwen2DecodeGraph Capture(Func<Tensor, Tensor, Tensor, Tensor> step, Tensor ids, Tensor ropeDeltas, long position,
        IEnumerable<Tensor> tensors)
    {
        var device = ids.device;
        var idsInput = ids.to(ScalarType.Int64).clone().DetachFromDisposeScope();
        var deltasInput = ropeDeltas.to(ScalarType.Int64, device).clone().DetachFromDisposeScope();
        var positionInput = torch.tensor(new[] { position }, ScalarType.Int64, device).DetachFromDisposeScope();
        try
        {
            // Warm-up runs write this step's own keys/values at this slot, as the replay then does again.
            var (graph, logits) = CudaGraph.Capture(device, () => step(idsInput, deltasInput, positionInput));
            return new Qwen2DecodeGraph(graph, idsInput, deltasInput, positionInput, logits.DetachFromDisposeScope(),
                tensors.Select(t => t.Handle).ToArray());
        }
        catch
        {
            idsInput.Dispose();
            deltasInput.Dispose();
            positionInput.Dispose();
            throw;
        }
    }

    /// <summary>Whether the graph was captured over exactly these tensors, in this order (a cache that regrew or weights
    /// that were replaced, e.g. by <c>.to(..)</c>, need a new capture).</summary>
    public bool Reads(IReadOnlyList<Tensor> tensors) =>
        tensors.Count == _captured.Length && tensors.Select(t => t.Handle).SequenceEqual(_captured);

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
