using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// A tensor's version counter (<c>tensor._version</c> in PyTorch): libtorch bumps it on every in-place write — an op
/// ending in <c>_</c>, <c>copy_</c> from <c>load_state_dict</c>, an optimizer step — and views share their base's counter.
/// TorchSharp 0.107 does not expose it; it is read through <c>at::native::_version(const at::Tensor&amp;)</c>, which
/// libtorch_cpu exports on every platform build (a TorchSharp tensor handle is an <c>at::Tensor*</c>).
/// <see cref="Available"/> is false where the export is missing; callers then treat every cache as stale.
/// </summary>
internal static unsafe class TensorVersion
{
    const string Export = "_ZN2at6native8_versionERKNS_6TensorE";

    static readonly Lazy<IntPtr> Entry = new(() =>
    {
        foreach (string library in TorchRuntime.LoadedNativeLibraries().Where(p => Path.GetFileName(p).StartsWith("libtorch_cpu", StringComparison.Ordinal)))
            if (NativeLibrary.TryLoad(library, out var handle) && NativeLibrary.TryGetExport(handle, Export, out var entry))
                return entry;
        return IntPtr.Zero;
    });

    public static bool Available => Entry.Value != IntPtr.Zero;

    /// <summary>The version of <paramref name="tensor"/>; -1 when <see cref="Available"/> is false.</summary>
    public static long Of(Tensor tensor) =>
        Available ? ((delegate* unmanaged<IntPtr, long>)Entry.Value)(tensor.Handle) : -1;
}
