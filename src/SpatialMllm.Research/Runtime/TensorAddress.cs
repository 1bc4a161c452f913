using SpatialMllm.Research.Runtime;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// The address of a tensor's first element (<c>at::Tensor::data_ptr()</c>, storage offset included), which TorchSharp
/// 0.107 does not expose for device tensors: read through the <c>THSTensor_data</c> export of the libLibTorchSharp.so the
/// process has loaded. (Beside <see cref="TensorVersion"/>, the other libtorch value TorchSharp does not expose: NCCL,
/// the fused kernels, the decode graph and the weight snapshots read it.)
/// </summary>
internal static unsafe class TensorAddress
{
    static readonly Lazy<IntPtr> DataExport = new(() =>
    {
        // The copy TorchSharp loaded, found by its soname without loading anything: never a second copy, and still found
        // when the file was replaced on disk since (a rebuild of the output folder while this process runs), which a
        // load by the path /proc/self/maps shows would not.
        TorchRuntime.EnsureLoaded();
        IntPtr library = DlOpen("libLibTorchSharp.so", RtldNow | RtldNoLoad);
        if (library == IntPtr.Zero) throw new InvalidOperationException("libLibTorchSharp.so is not loaded in this process.");
        return NativeLibrary.GetExport(library, "THSTensor_data");
    });

    const int RtldNow = 2, RtldNoLoad = 4;

    [DllImport("libc", EntryPoint = "dlopen")]
    static extern IntPtr DlOpen(string file, int mode);

    public static IntPtr Of(Tensor tensor)
    {
        var data = OrZero(tensor);
        return data != IntPtr.Zero ? data : throw new InvalidOperationException("THSTensor_data returned null (undefined tensor?).");
    }

    /// <summary>The address, or zero for a tensor without elements. Not for meta tensors (libtorch has no address to give).</summary>
    public static IntPtr OrZero(Tensor tensor) => ((delegate* unmanaged<IntPtr, IntPtr>)DataExport.Value)(tensor.Handle);
}
