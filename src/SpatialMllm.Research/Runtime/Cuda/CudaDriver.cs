using System.Runtime.InteropServices;

namespace SpatialMllm.Research.Runtime.Cuda;

/// <summary>
/// The few CUDA driver API calls that load a run-time-compiled module into libtorch's (primary) context and launch its
/// kernels on libtorch's stream, through function pointers into <c>libcuda.so.1</c> (the driver every CUDA libtorch
/// already uses). <see cref="Available"/> is false where there is no driver (CPU machines); callers fall back.
/// </summary>
internal static unsafe class CudaDriver
{
    sealed class EntryPoints
    {
        public delegate* unmanaged<uint, int> Init;
        public delegate* unmanaged<int*, int, int> DeviceGet;
        public delegate* unmanaged<int*, int, int, int> DeviceGetAttribute;
        public delegate* unmanaged<IntPtr*, int, int> DevicePrimaryCtxRetain;
        public delegate* unmanaged<IntPtr*, int> CtxGetCurrent;
        public delegate* unmanaged<IntPtr, int> CtxSetCurrent;
        public delegate* unmanaged<IntPtr*, void*, int> ModuleLoadData;
        public delegate* unmanaged<IntPtr*, IntPtr, byte*, int> ModuleGetFunction;
        public delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int> LaunchKernel;
        public delegate* unmanaged<int, byte**, int> GetErrorString;
    }

    static readonly Lazy<(EntryPoints? Entries, string? Why)> Loaded = new(Load);
    static readonly Dictionary<int, IntPtr> PrimaryContexts = [];

    /// <summary>Whether <c>libcuda.so.1</c> loaded and initialised.</summary>
    public static bool Available => Loaded.Value.Entries is not null;

    /// <summary>Why <see cref="Available"/> is false; null when it is true.</summary>
    public static string? UnavailableReason => Loaded.Value.Why;

    static EntryPoints Entries => Loaded.Value.Entries
        ?? throw new InvalidOperationException("The CUDA driver is not available: " + Loaded.Value.Why);

    /// <summary>(major, minor) compute capability of device <paramref name="device"/>.</summary>
    public static (int Major, int Minor) ComputeCapability(int device)
    {
        var e = Entries;
        int handle, major, minor;
        Check(e.DeviceGet(&handle, device), "cuDeviceGet");
        Check(e.DeviceGetAttribute(&major, AttributeComputeCapabilityMajor, handle), "cuDeviceGetAttribute(major)");
        Check(e.DeviceGetAttribute(&minor, AttributeComputeCapabilityMinor, handle), "cuDeviceGetAttribute(minor)");
        return (major, minor);
    }

    /// <summary>
    /// Makes device <paramref name="device"/>'s primary context (the one libtorch's runtime API calls use) current on this
    /// thread until the returned scope is disposed, which restores the previous one. Needed because the driver API acts on
    /// the calling thread's current context, and a thread that has only used libtorch through another device, or a fresh
    /// thread (.NET notebook cells run on several), may have a different one or none.
    /// </summary>
    public static ContextScope EnterPrimaryContext(int device)
    {
        var e = Entries;
        IntPtr primary;
        lock (PrimaryContexts)
        {
            if (!PrimaryContexts.TryGetValue(device, out primary))
            {
                int handle;
                Check(e.DeviceGet(&handle, device), "cuDeviceGet");
                // Retained for the process's lifetime, like libtorch's own reference to it.
                Check(e.DevicePrimaryCtxRetain(&primary, handle), "cuDevicePrimaryCtxRetain");
                PrimaryContexts[device] = primary;
            }
        }
        IntPtr current;
        Check(e.CtxGetCurrent(&current), "cuCtxGetCurrent");
        if (current == primary) return default;
        Check(e.CtxSetCurrent(primary), "cuCtxSetCurrent");
        return new ContextScope(current);
    }

    /// <summary>Restores the context that was current before <see cref="EnterPrimaryContext"/> changed it.</summary>
    public readonly struct ContextScope : IDisposable
    {
        readonly IntPtr _previous;
        readonly bool _changed;

        internal ContextScope(IntPtr previous) { _previous = previous; _changed = true; }

        public void Dispose()
        {
            if (_changed && _previous != IntPtr.Zero) Check(Entries.CtxSetCurrent(_previous), "cuCtxSetCurrent (restore)");
        }
    }

    /// <summary>Loads a cubin (or PTX) image into the current context; the module lives as long as the process.</summary>
    public static IntPtr LoadModule(byte[] image)
    {
        IntPtr module;
        fixed (byte* data = image) Check(Entries.ModuleLoadData(&module, data), "cuModuleLoadData");
        return module;
    }

    public static IntPtr GetFunction(IntPtr module, string name)
    {
        IntPtr function;
        var bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        fixed (byte* n = bytes) Check(Entries.ModuleGetFunction(&function, module, n), $"cuModuleGetFunction({name})");
        return function;
    }

    /// <summary>Launches a 1-D grid of 1-D blocks with <paramref name="sharedBytes"/> of dynamic shared memory on
    /// <paramref name="stream"/>; <paramref name="arguments"/> points at one pointer per kernel parameter, each to that
    /// parameter's value.</summary>
    public static void Launch(IntPtr function, string name, uint blocks, uint threadsPerBlock, IntPtr stream, void** arguments, uint sharedBytes = 0) =>
        Check(Entries.LaunchKernel(function, blocks, 1, 1, threadsPerBlock, 1, 1, sharedBytes, stream, arguments, null), $"cuLaunchKernel({name})");

    static void Check(int result, string call)
    {
        if (result == 0) return;
        byte* message = null;
        string text = Loaded.Value.Entries is { } e && e.GetErrorString(result, &message) == 0 && message != null
            ? Marshal.PtrToStringAnsi((IntPtr)message) ?? "" : "unknown error";
        throw new InvalidOperationException($"{call} failed: CUDA driver error {result} ({text}).");
    }

    const int AttributeComputeCapabilityMajor = 75, AttributeComputeCapabilityMinor = 76;

    static (EntryPoints?, string?) Load()
    {
        if (!NativeLibrary.TryLoad("libcuda.so.1", out var library)) return (null, "libcuda.so.1 (the NVIDIA driver) could not be loaded");
        try
        {
            var entries = new EntryPoints
            {
                Init = (delegate* unmanaged<uint, int>)NativeLibrary.GetExport(library, "cuInit"),
                DeviceGet = (delegate* unmanaged<int*, int, int>)NativeLibrary.GetExport(library, "cuDeviceGet"),
                DeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)NativeLibrary.GetExport(library, "cuDeviceGetAttribute"),
                DevicePrimaryCtxRetain = (delegate* unmanaged<IntPtr*, int, int>)NativeLibrary.GetExport(library, "cuDevicePrimaryCtxRetain"),
                CtxGetCurrent = (delegate* unmanaged<IntPtr*, int>)NativeLibrary.GetExport(library, "cuCtxGetCurrent"),
                CtxSetCurrent = (delegate* unmanaged<IntPtr, int>)NativeLibrary.GetExport(library, "cuCtxSetCurrent"),
                ModuleLoadData = (delegate* unmanaged<IntPtr*, void*, int>)NativeLibrary.GetExport(library, "cuModuleLoadData"),
                ModuleGetFunction = (delegate* unmanaged<IntPtr*, IntPtr, byte*, int>)NativeLibrary.GetExport(library, "cuModuleGetFunction"),
                LaunchKernel = (delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int>)
                    NativeLibrary.GetExport(library, "cuLaunchKernel"),
                GetErrorString = (delegate* unmanaged<int, byte**, int>)NativeLibrary.GetExport(library, "cuGetErrorString"),
            };
            int init = entries.Init(0);
            return init == 0 ? (entries, null) : (null, $"cuInit failed with CUDA driver error {init}");
        }
        catch (EntryPointNotFoundException e)
        {
            return (null, $"libcuda.so.1 lacks an entry point: {e.Message}");
        }
    }
}
