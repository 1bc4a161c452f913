using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The vision tower's rotary embedding of q and k in fp32, rounded back to the activation dtype
/// (<c>RotaryEmbedding.ApplyPromoted(qk, cos, signedSin).to(dtype)</c>) as one CUDA kernel launch instead of three fp32
/// passes and a cast. Same rounding: x·cos rounded to fp32, then addcmul's fused multiply-add of flip(x)·signedSin onto
/// it (PyTorch's CUDA addcmul contracts <c>a + b·c</c>; measured bit-equal on an H100), then the cast. Float32, bfloat16
/// and float16 CUDA tensors with a head dimension divisible by 8.
/// </summary>
internal static unsafe class FusedVisionRope
{
    /// <summary>A thread per 4 elements of the first half of a row and the 4 they pair with in the second.</summary>
    const int ElementsPerThread = 8, ThreadsPerBlock = 256;

    static readonly CompiledCudaModule Module = new("qwen_vision_rope", CudaSources.Read("vision_rope.cu"));

    /// <summary>
    /// <paramref name="qk"/> [2, n, heads, headDim] (q and k, views with unit last stride, such as the narrow of the
    /// permuted qkv projection), <paramref name="cos"/> and <paramref name="signedSin"/> [n, 1, headDim] fp32 → the rotated
    /// q and k in <paramref name="qk"/>'s dtype, contiguous; null when the fused kernel does not apply (not CUDA, another
    /// dtype or layout, autograd, kernels off or unavailable).
    /// </summary>
    public static Tensor? TryApply(Tensor qk, Tensor cos, Tensor signedSin)
    {
        if (!Applies(qk, cos, signedSin)) return null;
        int device = qk.device_index;
        string kernel = KernelName(qk.dtype);
        if (!Module.TryGetFunction(device, kernel, out var function)) return null;

        long tokens = qk.shape[1], heads = qk.shape[2], headDim = qk.shape[3];
        var output = torch.empty(qk.shape, qk.dtype, qk.device);
        IntPtr data = TensorAddress.Of(qk), cosData = TensorAddress.Of(cos), sinData = TensorAddress.Of(signedSin);
        IntPtr outData = TensorAddress.Of(output);
        long strideQk = qk.stride(0), strideN = qk.stride(1), strideH = qk.stride(2);
        int tokens32 = checked((int)tokens), heads32 = checked((int)heads), headDim32 = checked((int)headDim);
        void** arguments = stackalloc void*[] { &data, &strideQk, &strideN, &strideH, &tokens32, &heads32, &headDim32, &cosData, &sinData, &outData };
        CompiledCudaModule.Launch(device, function, kernel, BlockCount(qk.numel()), ThreadsPerBlock, arguments);
        return output;
    }

    /// <summary>Blocks for <paramref name="elements"/> elements of q and k together.</summary>
    public static uint BlockCount(long elements) => CompiledCudaModule.BlockCount(elements / ElementsPerThread, ThreadsPerBlock);

    public static string KernelName(ScalarType dtype) => "qwen_vision_rope_" + dtype switch
    {
        ScalarType.Float32 => "f32",
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "f16",
        _ => throw new ArgumentException($"no fused vision RoPE kernel for {dtype}"),
    };

    static bool Applies(Tensor qk, Tensor cos, Tensor signedSin)
    {
        if (qk.device_type != DeviceType.CUDA || qk.dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16)) return false;
        if (qk.dim() != 4 || qk.shape[0] != 2 || qk.shape[3] % ElementsPerThread != 0) return false;
        // 4-element vector loads: unit last stride, strides and addresses in whole vectors.
        if (qk.stride(3) != 1 || qk.stride().Take(3).Any(s => s % 4 != 0)) return false;
        long tokens = qk.shape[1], headDim = qk.shape[3];
        foreach (var table in new[] { cos, signedSin })
            if (table.dtype != ScalarType.Float32 || table.device_type != DeviceType.CUDA || table.device_index != qk.device_index || !table.is_contiguous()
                || table.shape[0] != tokens || table.numel() != tokens * headDim) return false;
        if (torch.is_grad_enabled() && new[] { qk, cos, signedSin }.Any(t => t.requires_grad)) return false;
        return TensorAddress.Of(qk) % (4 * qk.ElementSize) == 0
            && TensorAddress.Of(cos) % 16 == 0 && TensorAddress.Of(signedSin) % 16 == 0;
    }
}
