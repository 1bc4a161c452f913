using System.Runtime.InteropServices;
using TorchSharp;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// For a notebook kernel that loads TorchSharp straight from the NuGet cache (<c>#r "nuget: SpatialMllm.Research"</c>):
/// there no build step patches <c>libLibTorchSharp.so</c>, and TorchSharp 0.107's copy needs GLIBCXX_3.4.32, which
/// Debian 12 and Ubuntu 22.04 lack (see build/PatchLibTorchSharp.targets). Where the system's libstdc++ lacks it, this
/// makes a patched copy outside the cache (under ~/.cache/spatial-mllm) and loads libtorch and that copy by absolute
/// path before TorchSharp starts; TorchSharp's own load by name then finds them already loaded. The package's kernel
/// extension calls it when the package is referenced.
/// </summary>
public static class NuGetCacheNatives
{
    const string GlibcxxVersion = "GLIBCXX_3.4.32";

    /// <summary>Returns what it did, for the kernel to show (null: nothing was needed).</summary>
    public static string? PreloadPatchedLibTorchSharp()
    {
        if (!OperatingSystem.IsLinux() || GlibcxxRequirement.SystemHas(GlibcxxVersion)) return null;
        // …/torchsharp/0.107.0/lib/net8.0/TorchSharp.dll → …/torchsharp/0.107.0 and the packages folder above it.
        var torchSharp = new DirectoryInfo(Path.GetDirectoryName(typeof(torch).Assembly.Location)!).Parent?.Parent;
        string? shipped = torchSharp is null ? null : Path.Combine(torchSharp.FullName, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        string? packages = torchSharp?.Parent?.Parent?.FullName;
        if (shipped is null || packages is null || !File.Exists(shipped)) return null; // not from the NuGet cache
        // Not torch.__version__: any use of the torch class starts TorchSharp's native load, which this must precede.
        string? libtorch = Directory.Exists(Path.Combine(packages, "libtorch-cpu-linux-x64"))
            ? Directory.GetDirectories(Path.Combine(packages, "libtorch-cpu-linux-x64"))
                .Select(version => Path.Combine(version, "runtimes", "linux-x64", "native"))
                .Where(native => File.Exists(Path.Combine(native, "libtorch.so"))).Order().LastOrDefault()
            : null;
        if (libtorch is null) return null; // another backend: left to TorchSharp

        string folder = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "spatial-mllm",
            $"libtorchsharp-{torchSharp!.Name}");
        string patched = Path.Combine(folder, "libLibTorchSharp.so");
        if (!File.Exists(patched))
        {
            Directory.CreateDirectory(folder);
            string temp = patched + "." + Environment.ProcessId;
            File.Copy(shipped, temp, overwrite: true);
            GlibcxxRequirement.Weaken(temp, GlibcxxVersion);
            File.Move(temp, patched, overwrite: true);
        }
        foreach (string name in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
            NativeLibrary.Load(Path.Combine(libtorch, name));
        NativeLibrary.Load(patched);
        return $"libLibTorchSharp.so with {GlibcxxVersion} marked weak (the system's libstdc++ lacks it): {patched}";
    }
}
