using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// A captured sequence of libtorch CUDA work, replayed with one launch (<c>torch.cuda.CUDAGraph</c>): for work whose cost
/// is the host's per-op launch overhead rather than the GPU, such as a decode step of ~1250 small kernels. Replays read
/// and write the very tensors the capture used — inputs are changed in place between replays, outputs are overwritten by
/// the next one — and intermediates live in the graph's private memory pool until it is disposed.
/// </summary>
internal sealed class CudaGraph : IDisposable
{
    IntPtr _graph;
    readonly int _device;

    CudaGraph(IntPtr graph, int device) => (_graph, _device) = (graph, device);

    /// <summary>Whether graphs can be captured here (a CUDA libtorch that exports the entry points).</summary>
    public static bool Supported => LibTorchCuda.Available;

    /// <summary>
    /// Runs <paramref name="body"/> <paramref name="warmups"/> times and then once under capture, on a stream of c10's
    /// pool (graphs cannot be captured on the default stream), and returns the graph and what the captured run returned.
    /// Warm-up runs do the lazy first-call work (library handles, TorchScript's profiling runs) outside the capture; they
    /// must leave the state the captured run expects. The body must not synchronise with the host (no <c>item()</c>, no
    /// copies to the CPU) and must keep every tensor it reads alive for as long as the graph is replayed.
    /// </summary>
    public static (CudaGraph Graph, T Result) Capture<T>(Device device, Func<T> body, int warmups = 2)
    {
        if (device.type != DeviceType.CUDA) throw new ArgumentException($"CUDA graphs need a cuda device, got {device}.");
        int index = Math.Max(device.index, 0);
        // Capture begins on the current device's current stream: make the graph's device current (a worker on cuda:1
        // otherwise captured on cuda:0's default stream and failed).
        int previousDevice = LibTorchCuda.CurrentDevice();
        LibTorchCuda.SetDevice(index);
        var previous = LibTorchCuda.CurrentStream(index);
        torch.cuda.synchronize(device);
        LibTorchCuda.SetCurrentStream(LibTorchCuda.StreamFromPool(index));
        IntPtr graph = IntPtr.Zero;
        try
        {
            for (int i = 0; i < warmups; i++)
                if (body() is IDisposable warm) warm.Dispose();
            torch.cuda.synchronize(device);
            graph = LibTorchCuda.CreateGraph();
            LibTorchCuda.CaptureBegin(graph);
            T result;
            try { result = body(); }
            finally { LibTorchCuda.CaptureEnd(graph); }
            torch.cuda.synchronize(device);
            return (new CudaGraph(graph, index), result);
        }
        catch
        {
            if (graph != IntPtr.Zero) LibTorchCuda.DestroyGraph(graph);
            throw;
        }
        finally
        {
            LibTorchCuda.SetCurrentStream(previous);
            LibTorchCuda.SetDevice(previousDevice);
        }
    }

    /// <summary>Launches the captured work on the current stream, ordered after what was queued there before.</summary>
    public void Replay()
    {
        ObjectDisposedException.ThrowIf(_graph == IntPtr.Zero, this);
        int current = LibTorchCuda.CurrentDevice();
        if (current == _device) { LibTorchCuda.Replay(_graph); return; }
        LibTorchCuda.SetDevice(_device);
        try { LibTorchCuda.Replay(_graph); }
        finally { LibTorchCuda.SetDevice(current); }
    }

    public void Dispose()
    {
        if (_graph == IntPtr.Zero) return;
        LibTorchCuda.DestroyGraph(_graph);
        _graph = IntPtr.Zero;
    }
}
