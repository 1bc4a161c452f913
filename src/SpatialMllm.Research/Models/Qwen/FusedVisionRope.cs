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

    static readonly CompiledCudaModule Module = new("qwen_vision_rope", Source);

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
        IntPtr data = TensorDataPointer.Of(qk), cosData = TensorDataPointer.Of(cos), sinData = TensorDataPointer.Of(signedSin);
        IntPtr outData = TensorDataPointer.Of(output);
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
        return TensorDataPointer.Of(qk) % (4 * qk.ElementSize) == 0
            && TensorDataPointer.Of(cos) % 16 == 0 && TensorDataPointer.Of(signedSin) % 16 == 0;
    }

    const string Source = """
        template <class T>
        __device__ __forceinline__ void VisionRope(
            const typename T::Storage* x, long long strideQk, long long strideN, long long strideH, int tokens, int heads,
            int headDim, const float* cosTable, const float* sinTable, typename T::Storage* out)
        {
            const int groups = headDim / 8;
            const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            const long long rowsPerTensor = (long long)tokens * heads;
            const long long row = index / groups;
            if (row >= 2 * rowsPerTensor) return;
            const int g = (int)(index % groups);
            const int isK = row >= rowsPerTensor;
            const long long r = row - isK * rowsPerTensor;
            const int h = (int)(r % heads);
            const long long n = r / heads;
            const int half = headDim / 2;

            // Elements e (first half) and e + half pair up: out[e] = x[e]·cos[e] + x[e+half]·signedSin[e] and
            // out[e+half] = x[e+half]·cos[e+half] + x[e]·signedSin[e+half]: the first product rounded to fp32 (its own
            // eager kernel), the second product and the sum one fused multiply-add (addcmul's).
            const typename T::Storage* first = x + isK * strideQk + n * strideN + h * strideH + g * 4;
            const float* cosRow = cosTable + n * headDim + g * 4;
            const float* sinRow = sinTable + n * headDim + g * 4;
            float a[4], b[4], cosA[4], cosB[4], sinA[4], sinB[4], outA[4], outB[4];
            Load4<T>(first, a);
            Load4<T>(first + half, b);
            Load4<Float32>(cosRow, cosA);
            Load4<Float32>(cosRow + half, cosB);
            Load4<Float32>(sinRow, sinA);
            Load4<Float32>(sinRow + half, sinB);
            #pragma unroll
            for (int i = 0; i < 4; i++)
            {
                outA[i] = fmaf(b[i], sinA[i], __fmul_rn(a[i], cosA[i]));
                outB[i] = fmaf(a[i], sinB[i], __fmul_rn(b[i], cosB[i]));
            }
            typename T::Storage* o = out + row * headDim + g * 4;
            Store4<T>(o, outA);
            Store4<T>(o + half, outB);
        }

        #define VISION_ROPE(T, suffix)                                                                                      \
            extern "C" __global__ void __launch_bounds__(256) qwen_vision_rope_##suffix(                                     \
                const T::Storage* x, long long strideQk, long long strideN, long long strideH, int tokens, int heads,       \
                int headDim, const float* cosTable, const float* sinTable, T::Storage* out)                                  \
            {                                                                                                                \
                VisionRope<T>(x, strideQk, strideN, strideH, tokens, heads, headDim, cosTable, sinTable, out);              \
            }
        VISION_ROPE(Float32, f32)
        VISION_ROPE(BFloat16, bf16)
        VISION_ROPE(Float16, f16)

        """;
}
