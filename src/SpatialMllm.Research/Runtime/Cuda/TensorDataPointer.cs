using static TorchSharp.torch;

namespace SpatialMllm.Research.Runtime.Cuda;

/// <summary>
/// <see cref="TensorAddress"/> under the name the fused kernels and the weight checks use. The reading itself lives in
/// <c>Runtime</c>, which NCCL needs too and which depends on nothing of <c>Runtime.Cuda</c>; this name can go once its
/// callers (Models/, Modules/) import <c>SpatialMllm.Research.Runtime</c> and call <see cref="TensorAddress"/>.
/// </summary>
internal static class TensorDataPointer
{
    public static IntPtr Of(Tensor tensor) => TensorAddress.Of(tensor);

    /// <inheritdoc cref="TensorAddress.OrZero"/>
    public static IntPtr OrZero(Tensor tensor) => TensorAddress.OrZero(tensor);
}
