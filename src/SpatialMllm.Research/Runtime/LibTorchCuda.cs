using System.Runtime.InteropServices;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// The few parts of libtorch's CUDA C++ API that TorchSharp 0.107 does not wrap — the current stream and
/// <c>at::cuda::CUDAGraph</c> — called through their exported (Itanium-mangled) symbols in the <c>libc10_cuda.so</c> /
/// <c>libtorch_cuda.so</c> the process already has loaded. Every signature here passes only pointers, integers and
/// trivially copyable 16-byte structs, which the x86-64 System V ABI passes in two registers, as .NET does.
/// <see cref="Available"/> is false on CPU builds and on a libtorch whose exports differ; callers fall back.
/// </summary>
internal static unsafe class LibTorchCuda
{
    /// <summary><c>c10::cuda::CUDAStream</c> by value: its <c>c10::Device</c> (2 bytes, padded) and stream id.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public readonly struct CudaStream
    {
        readonly long _device;
        readonly long _id;
    }

    sealed class EntryPoints
    {
        public delegate* unmanaged<byte, sbyte, CudaStream> GetStreamFromPool;
        public delegate* unmanaged<sbyte, CudaStream> GetCurrentStream;
        public delegate* unmanaged<CudaStream, void> SetCurrentStream;
        public delegate* unmanaged<CudaStream*, IntPtr> RawStream;
        public delegate* unmanaged<IntPtr, byte, void> GraphConstruct;
        public delegate* unmanaged<IntPtr, ulong, ulong, int, void> GraphCaptureBegin;
        public delegate* unmanaged<IntPtr, void> GraphCaptureEnd;
        public delegate* unmanaged<IntPtr, void> GraphReplay;
        public delegate* unmanaged<IntPtr, void> GraphDestruct;
        public delegate* unmanaged<sbyte> GetCurrentDevice;
        public delegate* unmanaged<sbyte, byte, void> SetDeviceForce;   // set_device(DeviceIndex, bool force) (libtorch ≥ 2.3)
        public delegate* unmanaged<sbyte, void> SetDeviceOnly;          // set_device(DeviceIndex) (older)
    }

    static readonly Lazy<(EntryPoints? Entries, string? Why)> Loaded = new(Load);

    /// <summary>Whether libtorch's CUDA stream and graph entry points were found (a CUDA libtorch is loaded).</summary>
    public static bool Available => Loaded.Value.Entries is not null;

    /// <summary>Why <see cref="Available"/> is false; null when it is true.</summary>
    public static string? UnavailableReason => Loaded.Value.Why;

    static EntryPoints Entries => Loaded.Value.Entries
        ?? throw new InvalidOperationException("libtorch's CUDA entry points are not available: " + Loaded.Value.Why);

    /// <summary>The CUDA device libtorch uses from this thread when none is named (<c>torch.cuda.current_device()</c>).</summary>
    public static int CurrentDevice() => Entries.GetCurrentDevice();

    /// <summary><c>torch.cuda.set_device</c>: graph capture and replay act on the current device's current stream.</summary>
    public static void SetDevice(int device)
    {
        var entries = Entries;
        if (entries.SetDeviceForce is not null) entries.SetDeviceForce(checked((sbyte)device), 0);
        else entries.SetDeviceOnly(checked((sbyte)device));
    }

    /// <summary>A stream from c10's pool (what <c>torch.cuda.Stream()</c> hands out) on <paramref name="device"/>.</summary>
    public static CudaStream StreamFromPool(int device) => Entries.GetStreamFromPool(0, checked((sbyte)device));

    /// <summary>The stream libtorch launches on from this thread (the legacy default stream unless changed).</summary>
    public static CudaStream CurrentStream(int device) => Entries.GetCurrentStream(checked((sbyte)device));

    public static void SetCurrentStream(CudaStream stream) => Entries.SetCurrentStream(stream);

    /// <summary>The <c>cudaStream_t</c> behind <paramref name="stream"/> (null for the legacy default stream).</summary>
    public static IntPtr RawStream(CudaStream stream) => Entries.RawStream is not null ? Entries.RawStream(&stream)
        : throw new InvalidOperationException("This libtorch does not export c10::cuda::CUDAStream::stream().");

    /// <summary>The <c>cudaStream_t</c> libtorch launches on from this thread: what a kernel launched outside libtorch must
    /// use to stay ordered with libtorch's work (and to be captured with it into a <see cref="CudaGraph"/>).</summary>
    public static IntPtr CurrentRawStream(int device) => RawStream(CurrentStream(device));

    // sizeof(at::cuda::CUDAGraph) is a few hundred bytes in libtorch 2.x; the object lives in memory we own.
    const int GraphObjectBytes = 16 * 1024;

    /// <summary>Constructs an <c>at::cuda::CUDAGraph</c> in unmanaged memory; free it with <see cref="DestroyGraph"/>.</summary>
    public static IntPtr CreateGraph()
    {
        var entries = Entries;
        var graph = (IntPtr)NativeMemory.AllocZeroed(GraphObjectBytes);
        entries.GraphConstruct(graph, 0);
        return graph;
    }

    /// <summary>Captures on the current stream (which must not be the default one) into the graph's private memory pool.
    /// Thread-local capture mode: other threads' CUDA calls neither join nor break the capture.</summary>
    public static void CaptureBegin(IntPtr graph) => Entries.GraphCaptureBegin(graph, 0, 0, CudaStreamCaptureModeThreadLocal);

    public static void CaptureEnd(IntPtr graph) => Entries.GraphCaptureEnd(graph);

    /// <summary>Launches the instantiated graph on the current stream.</summary>
    public static void Replay(IntPtr graph) => Entries.GraphReplay(graph);

    /// <summary>Destroys the graph (its executable and private memory pool) and frees the object's memory.</summary>
    public static void DestroyGraph(IntPtr graph)
    {
        Entries.GraphDestruct(graph);
        NativeMemory.Free((void*)graph);
    }

    const int CudaStreamCaptureModeThreadLocal = 1;

    static (EntryPoints?, string?) Load()
    {
        TorchRuntime.EnsureLoaded();
        var libraries = TorchRuntime.LoadedNativeLibraries();
        string? c10Cuda = libraries.FirstOrDefault(p => Path.GetFileName(p).StartsWith("libc10_cuda.so", StringComparison.Ordinal));
        string? torchCuda = libraries.FirstOrDefault(p => Path.GetFileName(p).StartsWith("libtorch_cuda.so", StringComparison.Ordinal));
        if (c10Cuda is null || torchCuda is null) return (null, "this process's libtorch has no CUDA libraries (libc10_cuda.so / libtorch_cuda.so)");
        try
        {
            IntPtr c10 = NativeLibrary.Load(c10Cuda), torch = NativeLibrary.Load(torchCuda);
            return (new EntryPoints
            {
                GetStreamFromPool = (delegate* unmanaged<byte, sbyte, CudaStream>)NativeLibrary.GetExport(c10, "_ZN3c104cuda17getStreamFromPoolEba"),
                GetCurrentStream = (delegate* unmanaged<sbyte, CudaStream>)NativeLibrary.GetExport(c10, "_ZN3c104cuda20getCurrentCUDAStreamEa"),
                SetCurrentStream = (delegate* unmanaged<CudaStream, void>)NativeLibrary.GetExport(c10, "_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE"),
                RawStream = NativeLibrary.TryGetExport(c10, "_ZNK3c104cuda10CUDAStream6streamEv", out var rawStream)
                    ? (delegate* unmanaged<CudaStream*, IntPtr>)rawStream : null,
                GraphConstruct = (delegate* unmanaged<IntPtr, byte, void>)NativeLibrary.GetExport(torch, "_ZN2at4cuda9CUDAGraphC1Eb"),
                GraphCaptureBegin = (delegate* unmanaged<IntPtr, ulong, ulong, int, void>)NativeLibrary.GetExport(torch,
                    "_ZN2at4cuda9CUDAGraph13capture_beginESt4pairIyyE21cudaStreamCaptureMode"),
                GraphCaptureEnd = (delegate* unmanaged<IntPtr, void>)NativeLibrary.GetExport(torch, "_ZN2at4cuda9CUDAGraph11capture_endEv"),
                GraphReplay = (delegate* unmanaged<IntPtr, void>)NativeLibrary.GetExport(torch, "_ZN2at4cuda9CUDAGraph6replayEv"),
                GraphDestruct = (delegate* unmanaged<IntPtr, void>)NativeLibrary.GetExport(torch, "_ZN2at4cuda9CUDAGraphD1Ev"),
                GetCurrentDevice = (delegate* unmanaged<sbyte>)NativeLibrary.GetExport(c10, "_ZN3c104cuda14current_deviceEv"),
                SetDeviceForce = NativeLibrary.TryGetExport(c10, "_ZN3c104cuda10set_deviceEab", out var setDeviceForce)
                    ? (delegate* unmanaged<sbyte, byte, void>)setDeviceForce : null,
                SetDeviceOnly = (delegate* unmanaged<sbyte, void>)(NativeLibrary.TryGetExport(c10, "_ZN3c104cuda10set_deviceEa", out var setDevice) ? setDevice
                    : setDeviceForce != IntPtr.Zero ? IntPtr.Zero : throw new EntryPointNotFoundException("c10::cuda::set_device")),
            }, null);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            return (null, $"{e.GetType().Name}: {e.Message}");
        }
    }
}
