using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Runtime;

/// <summary>Loads libtorch once with a clear message when it cannot, and picks devices.</summary>
public static class TorchRuntime
{
    static readonly Lazy<Exception?> LoadError = new(TryLoad);

    /// <summary>Throws an explanation (not a deep libtorch error) when TorchSharp's native library cannot load.</summary>
    public static void EnsureLoaded()
    {
        if (LoadError.Value is { } e)
            throw new InvalidOperationException(
                "TorchSharp could not load libtorch. On Debian 12 / Ubuntu 22.04 the shipped libLibTorchSharp.so needs " +
                "GLIBCXX_3.4.32: build through this repository (its build step patches the output copy) rather than " +
                "referencing TorchSharp from the NuGet cache directly. On the GPU machine, source .gpu/env.sh so that " +
                "PyTorch's torch/lib is on LD_LIBRARY_PATH. Underlying error: " + e.Message, e);
    }

    static Exception? TryLoad()
    {
        try
        {
            using var probe = torch.zeros(1);
            return null;
        }
        catch (Exception e) { return e; }
    }

    /// <summary>
    /// float32 means float32: TF32 off for cuBLAS matmuls and cuDNN convolutions, for the rest of the process. libtorch
    /// (like PyTorch) lets cuDNN use TF32 by default, which put the VGGT patch embedding's 14×14 convolution, and
    /// everything after it, ~1e-3 away from the float32 reference on Ampere and later GPUs. Loading a model in float32
    /// calls this; bf16 models keep PyTorch's defaults (as the seed ran: VGGT's float32 heads use TF32 convolutions
    /// there, 3.5 s against 7.9 s for space-aware sampling of 128 frames on an H200). To have TF32's speed in float32
    /// anyway, set <c>torch.backends.cudnn.allow_tf32</c> / <c>torch.backends.cuda.matmul.allow_tf32</c> after loading.
    /// </summary>
    public static void UseFullFloat32Precision()
    {
        EnsureLoaded();
        torch.backends.cuda.matmul.allow_tf32 = false;
        torch.backends.cudnn.allow_tf32 = false;
    }

    /// <summary>
    /// The libtorch and TorchSharp native libraries this process has loaded, by path (Linux, from /proc/self/maps;
    /// empty elsewhere): shows which copy is in use, e.g. the patched one in the build output rather than the NuGet
    /// cache's, or PyTorch's libraries on the GPU machine.
    /// </summary>
    public static IReadOnlyList<string> LoadedNativeLibraries()
    {
        EnsureLoaded();
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps)) return [];
        return File.ReadLines(maps)
            .Select(line => line.IndexOf('/') is var start and >= 0 ? line[start..] : "")
            .Where(path => Path.GetFileName(path) is var name
                && (name.StartsWith("libtorch", StringComparison.Ordinal) || name.StartsWith("libc10", StringComparison.Ordinal)
                    || name.StartsWith("libLibTorchSharp", StringComparison.Ordinal)))
            .Distinct()
            .ToList();
    }

    /// <summary><c>cuda</c> when a GPU is visible, else <c>cpu</c>.</summary>
    public static Device DefaultDevice
    {
        get
        {
            EnsureLoaded();
            return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
        }
    }

    /// <summary>Parses "cpu", "cuda", "cuda:1" or "auto" (the default device).</summary>
    public static Device ParseDevice(string? name)
    {
        EnsureLoaded();
        if (string.IsNullOrWhiteSpace(name) || name == "auto") return DefaultDevice;
        try { return torch.device(name); }
        catch (Exception e) { throw new ArgumentException($"Unknown device '{name}' (use cpu, cuda, cuda:N or auto).", e); }
    }

    /// <summary>Parses "float32"/"fp32", "bfloat16"/"bf16", "float16"/"fp16".</summary>
    public static ScalarType ParseDType(string? name) => name?.ToLowerInvariant() switch
    {
        null or "" or "float32" or "fp32" or "f32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "fp16" or "half" => ScalarType.Float16,
        _ => throw new ArgumentException($"Unknown dtype '{name}' (use float32, bfloat16 or float16)."),
    };
}
