using System.Runtime.InteropServices;
using System.Text;

namespace SpatialMllm.Research.Runtime.Cuda;

/// <summary>
/// NVRTC, CUDA's run-time C++ compiler, through function pointers: compiles a kernel source to a cubin for one GPU
/// architecture. libtorch does not load NVRTC up front, so the library is looked for next to the CUDA libraries of the
/// PyTorch wheel the process runs on (<c>site-packages/nvidia/cu13/lib</c> for CUDA 13, <c>nvidia/cuda_nvrtc/lib</c> for
/// CUDA 12, relative to <c>torch/lib</c>), then by soname.
/// </summary>
internal static unsafe class Nvrtc
{
    sealed class EntryPoints
    {
        public delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int> CreateProgram;
        public delegate* unmanaged<IntPtr, int, byte**, int> CompileProgram;
        public delegate* unmanaged<IntPtr, nuint*, int> GetCubinSize;
        public delegate* unmanaged<IntPtr, byte*, int> GetCubin;
        public delegate* unmanaged<IntPtr, nuint*, int> GetProgramLogSize;
        public delegate* unmanaged<IntPtr, byte*, int> GetProgramLog;
        public delegate* unmanaged<IntPtr*, int> DestroyProgram;
        public delegate* unmanaged<int, byte*> GetErrorString;
    }

    static readonly Lazy<(EntryPoints? Entries, string? Why)> Loaded = new(Load);

    public static bool Available => Loaded.Value.Entries is not null;

    /// <summary>Why <see cref="Available"/> is false; null when it is true.</summary>
    public static string? UnavailableReason => Loaded.Value.Why;

    static EntryPoints Entries => Loaded.Value.Entries
        ?? throw new InvalidOperationException("NVRTC is not available: " + Loaded.Value.Why);

    /// <summary>Where to look for libnvrtc, best first, given the paths of the loaded libtorch libraries.</summary>
    public static IReadOnlyList<string> LibraryCandidates(IEnumerable<string> loadedLibraries)
    {
        var candidates = new List<string>();
        foreach (var torchLib in loadedLibraries.Where(p => Path.GetFileName(p).StartsWith("libtorch_cuda.so", StringComparison.Ordinal))
                     .Select(Path.GetDirectoryName).OfType<string>().Distinct())
        {
            string nvidia = Path.GetFullPath(Path.Combine(torchLib, "..", "..", "nvidia"));
            candidates.Add(Path.Combine(nvidia, "cu13", "lib", "libnvrtc.so.13"));
            candidates.Add(Path.Combine(nvidia, "cuda_nvrtc", "lib", "libnvrtc.so.12"));
        }
        candidates.AddRange(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]);
        return candidates;
    }

    /// <summary>Compiles <paramref name="source"/> for <c>sm_{major}{minor}</c>; throws with NVRTC's log when it does not compile.</summary>
    public static byte[] CompileToCubin(string source, string programName, (int Major, int Minor) architecture)
    {
        var e = Entries;
        IntPtr program;
        fixed (byte* src = Utf8(source), name = Utf8(programName))
            Check(e.CreateProgram(&program, src, name, 0, null, null), "nvrtcCreateProgram", program: IntPtr.Zero);
        try
        {
            // No --use_fast_math: the kernels reproduce PyTorch's IEEE rounding (exact division, fused multiply-adds where
            // nvcc contracts them), which are NVRTC's defaults.
            string[] options = [$"--gpu-architecture=sm_{architecture.Major}{architecture.Minor}", "--std=c++17"];
            var optionBytes = options.Select(Utf8).ToArray();
            var handles = optionBytes.Select(b => GCHandle.Alloc(b, GCHandleType.Pinned)).ToArray();
            try
            {
                var pointers = stackalloc byte*[handles.Length];
                for (int i = 0; i < handles.Length; i++) pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
                Check(e.CompileProgram(program, handles.Length, pointers), $"nvrtcCompileProgram({programName}, {string.Join(' ', options)})", program);
            }
            finally
            {
                foreach (var h in handles) h.Free();
            }
            nuint size;
            Check(e.GetCubinSize(program, &size), "nvrtcGetCUBINSize", program);
            var cubin = new byte[(int)size];
            fixed (byte* c = cubin) Check(e.GetCubin(program, c), "nvrtcGetCUBIN", program);
            return cubin;
        }
        finally
        {
            e.DestroyProgram(&program);
        }
    }

    static void Check(int result, string call, IntPtr program)
    {
        if (result == 0) return;
        var e = Entries;
        string error = Marshal.PtrToStringAnsi((IntPtr)e.GetErrorString(result)) ?? $"error {result}";
        string log = "";
        nuint size;
        if (program != IntPtr.Zero && e.GetProgramLogSize(program, &size) == 0 && size > 1)
        {
            var bytes = new byte[(int)size];
            fixed (byte* b = bytes) e.GetProgramLog(program, b);
            log = Environment.NewLine + Encoding.UTF8.GetString(bytes, 0, bytes.Length - 1);
        }
        throw new InvalidOperationException($"{call} failed: {error}.{log}");
    }

    static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text + "\0");

    static (EntryPoints?, string?) Load()
    {
        var candidates = LibraryCandidates(TorchRuntime.LoadedNativeLibraries());
        IntPtr library = IntPtr.Zero;
        foreach (var candidate in candidates)
            if ((!Path.IsPathRooted(candidate) || File.Exists(candidate)) && NativeLibrary.TryLoad(candidate, out library)) break;
        if (library == IntPtr.Zero) return (null, "libnvrtc could not be loaded (tried " + string.Join(", ", candidates) + ")");
        try
        {
            return (new EntryPoints
            {
                CreateProgram = (delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int>)NativeLibrary.GetExport(library, "nvrtcCreateProgram"),
                CompileProgram = (delegate* unmanaged<IntPtr, int, byte**, int>)NativeLibrary.GetExport(library, "nvrtcCompileProgram"),
                GetCubinSize = (delegate* unmanaged<IntPtr, nuint*, int>)NativeLibrary.GetExport(library, "nvrtcGetCUBINSize"),
                GetCubin = (delegate* unmanaged<IntPtr, byte*, int>)NativeLibrary.GetExport(library, "nvrtcGetCUBIN"),
                GetProgramLogSize = (delegate* unmanaged<IntPtr, nuint*, int>)NativeLibrary.GetExport(library, "nvrtcGetProgramLogSize"),
                GetProgramLog = (delegate* unmanaged<IntPtr, byte*, int>)NativeLibrary.GetExport(library, "nvrtcGetProgramLog"),
                DestroyProgram = (delegate* unmanaged<IntPtr*, int>)NativeLibrary.GetExport(library, "nvrtcDestroyProgram"),
                GetErrorString = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(library, "nvrtcGetErrorString"),
            }, null);
        }
        catch (EntryPointNotFoundException e)
        {
            return (null, $"libnvrtc lacks an entry point: {e.Message}");
        }
    }
}
