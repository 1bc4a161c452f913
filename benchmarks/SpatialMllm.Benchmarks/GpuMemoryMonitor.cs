using System.Runtime.InteropServices;

namespace SpatialMllm.Benchmarks;

/// <summary>
/// Device memory in use (NVML's <c>used</c>: every allocation on the GPU, i.e. this process's CUDA context plus
/// what the caching allocator holds, freed blocks included), polled every millisecond on a background thread.
/// TorchSharp exposes no allocator statistics, so this is not <c>torch.cuda.max_memory_allocated</c>: it is closer
/// to (and never below) <c>max_memory_reserved</c> + the context. Falls back to nothing (NaN) without NVML.
/// </summary>
internal sealed class GpuMemoryMonitor : IDisposable
{
    [StructLayout(LayoutKind.Sequential)]
    struct NvmlMemory { public ulong Total, Free, Used; }

    [DllImport("libnvidia-ml.so.1")] static extern int nvmlInit_v2();
    [DllImport("libnvidia-ml.so.1")] static extern int nvmlDeviceGetHandleByIndex_v2(uint index, out IntPtr device);
    [DllImport("libnvidia-ml.so.1")] static extern int nvmlDeviceGetMemoryInfo(IntPtr device, out NvmlMemory memory);
    [DllImport("libnvidia-ml.so.1")] static extern int nvmlShutdown();

    readonly IntPtr _device;
    readonly Thread? _thread;
    volatile bool _stop;
    long _peak;

    public bool Available { get; }

    public GpuMemoryMonitor(uint index = 0)
    {
        try
        {
            Available = nvmlInit_v2() == 0 && nvmlDeviceGetHandleByIndex_v2(index, out _device) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Available = false;
        }
        if (!Available) return;
        _peak = Used();
        _thread = new Thread(Poll) { IsBackground = true, Name = "nvml-poll" };
        _thread.Start();
    }

    long Used() => nvmlDeviceGetMemoryInfo(_device, out var m) == 0 ? (long)m.Used : 0;

    void Poll()
    {
        while (!_stop)
        {
            long used = Used();
            long seen;
            while (used > (seen = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, used, seen) != seen) { }
            Thread.Sleep(1);
        }
    }

    /// <summary>Bytes in use now.</summary>
    public double CurrentGiB => Available ? Used() / (double)(1L << 30) : double.NaN;

    /// <summary>Starts a new peak window at the current usage.</summary>
    public void ResetPeak()
    {
        if (Available) Interlocked.Exchange(ref _peak, Used());
    }

    /// <summary>Largest usage seen since the last <see cref="ResetPeak"/>.</summary>
    public double PeakGiB
    {
        get
        {
            if (!Available) return double.NaN;
            Thread.Sleep(3); // one more poll after the synchronised end of the measured work
            return Math.Max(Interlocked.Read(ref _peak), Used()) / (double)(1L << 30);
        }
    }

    public void Dispose()
    {
        _stop = true;
        _thread?.Join();
        if (Available) nvmlShutdown();
    }
}
