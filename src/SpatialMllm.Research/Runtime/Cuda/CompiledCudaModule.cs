namespace SpatialMllm.Research.Runtime.Cuda;

/// <summary>
/// A CUDA C++ source compiled with NVRTC on first use (once per GPU architecture) and loaded into each device's primary
/// context once, whose kernels launch on libtorch's current stream. Where it cannot be built — no driver or NVRTC, a
/// compile error — <see cref="TryGetFunction"/> answers false from then on (one line on stderr says why) and callers take
/// their eager path.
/// </summary>
internal sealed unsafe class CompiledCudaModule
{
    /// <summary>Whether fused kernels are used at all; benchmarks turn them off to time the eager path.</summary>
    public static bool Enabled { get; set; } = true;

    readonly string _name;
    readonly object _gate = new();
    readonly Dictionary<(int Major, int Minor), byte[]> _cubins = [];
    readonly Dictionary<int, IntPtr> _modules = [];
    readonly Dictionary<(int Device, string Kernel), IntPtr> _functions = [];
    string? _failure;

    /// <param name="name">Program name in messages.</param>
    /// <param name="source">Kernels (<c>extern "C"</c>), compiled after the scalar types header (<c>scalar_types.cuh</c>).</param>
    public CompiledCudaModule(string name, string source)
    {
        _name = name;
        // Storage types of float32, bfloat16 and float16 with IEEE round-to-nearest-even conversions (what c10's casts
        // do), and 4-element vector loads/stores that read and write floats: written out rather than included because
        // NVRTC does not ship cuda_bf16.h as a built-in header on every version.
        Source = CudaSources.Read("scalar_types.cuh") + source;
    }

    /// <summary>The full source NVRTC compiles.</summary>
    public string Source { get; }

    /// <summary>Why the module could not be built; null while it could (or has not been tried).</summary>
    public string? FailureReason { get { lock (_gate) return _failure; } }

    /// <summary>The kernel <paramref name="kernel"/> on CUDA device <paramref name="device"/>; false when fused kernels are
    /// off or the module cannot be built here.</summary>
    public bool TryGetFunction(int device, string kernel, out IntPtr function)
    {
        function = IntPtr.Zero;
        if (!Enabled) return false;
        lock (_gate)
        {
            if (_failure is not null) return false;
            if (_functions.TryGetValue((device, kernel), out function)) return true;
            try
            {
                if (!CudaDriver.Available) throw new InvalidOperationException(CudaDriver.UnavailableReason);
                var architecture = CudaDriver.ComputeCapability(device);
                if (!_cubins.TryGetValue(architecture, out var cubin))
                {
                    if (!Nvrtc.Available) throw new InvalidOperationException(Nvrtc.UnavailableReason);
                    _cubins[architecture] = cubin = Nvrtc.CompileToCubin(Source, _name + ".cu", architecture);
                }
                using (CudaDriver.EnterPrimaryContext(device))
                {
                    if (!_modules.TryGetValue(device, out var module)) _modules[device] = module = CudaDriver.LoadModule(cubin);
                    _functions[(device, kernel)] = function = CudaDriver.GetFunction(module, kernel);
                }
                return true;
            }
            catch (Exception e)
            {
                // Any failure to build (missing libraries, an NVRTC too old for the GPU, a compile error) leaves the
                // eager path in charge; the reason stays readable through FailureReason.
                _failure = $"{e.GetType().Name}: {e.Message}";
                Console.Error.WriteLine($"[{_name}] fused CUDA kernels unavailable, using the eager path: {_failure}");
                function = IntPtr.Zero;
                return false;
            }
        }
    }

    /// <summary>Launches <paramref name="function"/> (from <see cref="TryGetFunction"/>) on libtorch's current stream of
    /// <paramref name="device"/>, so it is ordered with (and captured into CUDA graphs with) libtorch's own work.</summary>
    public static void Launch(int device, IntPtr function, string kernel, uint blocks, uint threadsPerBlock, void** arguments, uint sharedBytes = 0)
    {
        using var context = CudaDriver.EnterPrimaryContext(device);
        CudaDriver.Launch(function, kernel, blocks, threadsPerBlock, CurrentStream(device), arguments, sharedBytes);
    }

    /// <summary>Blocks for <paramref name="items"/> work items at <paramref name="perBlock"/> a block.</summary>
    public static uint BlockCount(long items, int perBlock) =>
        checked((uint)((items + perBlock - 1) / perBlock));

    static IntPtr CurrentStream(int device)
    {
        // Without libtorch's stream entry points, the legacy default stream (null) is where libtorch launches unless
        // someone changed the current stream.
        if (!LibTorchCuda.Available) return IntPtr.Zero;
        try { return LibTorchCuda.CurrentRawStream(device); }
        catch (InvalidOperationException) { return IntPtr.Zero; }
    }
}
