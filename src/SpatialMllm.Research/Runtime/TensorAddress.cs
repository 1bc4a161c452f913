using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// The address of a tensor's first element (<c>at::Tensor::data_ptr()</c>, storage offset included), which TorchSharp
/// 0.107 does not expose for device tensors: read through the <c>THSTensor_data</c> export of the libLibTorchSharp.so the
/// process has loaded. (Beside <see cref="TensorVersion"/>, the other libtorch value TorchSharp does not expose; NCCL
/// and, through <c>Runtime.Cuda.TensorDataPointer</c>, the fused kernels read it.)
/// </summary>
internal static unsafe class TensorAddress
{
    static readonly Lazy<IntPtr> DataExport = new(() =>
    {
        string library = TorchRuntime.LoadedNativeLibraries().FirstOrDefault(p => Path.GetFileName(p).StartsWith("libLibTorchSharp", StringComparison.Ordinal))
            ?? throw new InvalidOperationException("libLibTorchSharp is not among this process's loaded libraries.");
        return NativeLibrary.GetExport(NativeLibrary.Load(library), "THSTensor_data");
    });

    public static IntPtr Of(Tensor tensor)
    {
        var data = OrZero(tensor);
        return data != IntPtr.Zero ? data : throw new InvalidOperationException("THSTensor_data returned null (undefined tensor?).");
    }

    /// <summary>The address, or zero for a tensor without elements. Not for meta tensors (libtorch has no address to give).</summary>
    public static IntPtr OrZero(Tensor tensor) => ((delegate* unmanaged<IntPtr, IntPtr>)DataExport.Value)(tensor.Handle);
}
