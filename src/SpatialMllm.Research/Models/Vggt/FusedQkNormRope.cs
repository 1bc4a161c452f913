using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// VGGT attention's per-head LayerNorm of q and k followed by 2D RoPE (<see cref="Rope2D.Apply"/>), for q and k in one
/// CUDA kernel launch instead of PyTorch's LayerNorm (a 128-thread block per 64-wide row) and four RoPE passes each. It
/// reproduces the eager path's rounding: LayerNorm statistics as PyTorch's vectorized kernel computes them (the same
/// Welford updates and combine tree, so the same bits), the affine in fp32 rounded to the activation dtype, then each
/// RoPE product and the sum rounded to it. Float32, bfloat16 and float16 CUDA tensors with a head dimension of 64.
/// </summary>
internal static unsafe class FusedQkNormRope
{
    public const int HeadDim = 64;

    /// <summary>A half-warp per row, two rows each: lane l holds elements 4l..4l+3, the thread layout of PyTorch's
    /// vectorized LayerNorm on a 64-wide row.</summary>
    const int LanesPerRow = HeadDim / 4, RowsPerLaneGroup = 2, ThreadsPerBlock = 128,
        RowsPerBlock = ThreadsPerBlock / LanesPerRow * RowsPerLaneGroup;

    static readonly CompiledCudaModule Module = new("vggt_qk_norm_rope", Source);

    /// <summary>
    /// <paramref name="q"/>, <paramref name="k"/> [B, N, heads, 64] (views with unit last stride, such as the selects
    /// of the qkv projection) → LayerNorm then RoPE of each, as one contiguous [2, B, N, heads, 64] tensor (q, then k);
    /// null when the fused kernel does not apply (not CUDA, another dtype or layout, autograd, kernels off or unavailable).
    /// </summary>
    public static Tensor? TryApply(Tensor q, Tensor k, LayerNorm qNorm, LayerNorm kNorm, double eps, Rope2D rope)
    {
        if (!Applies(q, k, qNorm, kNorm, rope)) return null;
        int device = q.device_index;
        string kernel = KernelName(q.dtype);
        if (!Module.TryGetFunction(device, kernel, out var function)) return null;

        long batch = q.shape[0], tokens = q.shape[1], heads = q.shape[2];
        var output = torch.empty([2, batch, tokens, heads, HeadDim], q.dtype, q.device);
        IntPtr qData = TensorDataPointer.Of(q), kData = TensorDataPointer.Of(k);
        IntPtr qWeight = TensorDataPointer.Of(qNorm.weight!), qBias = TensorDataPointer.Of(qNorm.bias!);
        IntPtr kWeight = TensorDataPointer.Of(kNorm.weight!), kBias = TensorDataPointer.Of(kNorm.bias!);
        IntPtr cos = TensorDataPointer.Of(rope.Cos), sin = TensorDataPointer.Of(rope.SignedSin), outData = TensorDataPointer.Of(output);
        long strideB = q.stride(0), strideN = q.stride(1), strideH = q.stride(2);
        int batch32 = checked((int)batch), tokens32 = checked((int)tokens), heads32 = checked((int)heads);
        float eps32 = (float)eps;   // PyTorch passes eps to the kernel as the accumulation type
        void** arguments = stackalloc void*[]
        {
            &qData, &kData, &strideB, &strideN, &strideH, &batch32, &tokens32, &heads32,
            &qWeight, &qBias, &kWeight, &kBias, &cos, &sin, &eps32, &outData,
        };
        CompiledCudaModule.Launch(device, function, kernel, BlockCount(2 * batch * tokens * heads), ThreadsPerBlock, arguments);
        return output;
    }

    /// <summary>Blocks for <paramref name="rows"/> 64-wide rows (q's and k's together).</summary>
    public static uint BlockCount(long rows) => CompiledCudaModule.BlockCount(rows, RowsPerBlock);

    public static string KernelName(ScalarType dtype) => "vggt_qk_norm_rope_" + dtype switch
    {
        ScalarType.Float32 => "f32",
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "f16",
        _ => throw new ArgumentException($"no fused q/k LayerNorm + RoPE kernel for {dtype}"),
    };

    static bool Applies(Tensor q, Tensor k, LayerNorm qNorm, LayerNorm kNorm, Rope2D rope)
    {
        if (q.device_type != DeviceType.CUDA || q.dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16)) return false;
        if (q.dim() != 4 || q.shape[3] != HeadDim || !q.shape.SequenceEqual(k.shape) || !q.stride().SequenceEqual(k.stride())) return false;
        if (k.device_type != DeviceType.CUDA || k.dtype != q.dtype || k.device_index != q.device_index) return false;
        // 4-element vector loads: unit last stride, strides and addresses in whole vectors.
        if (q.stride(3) != 1 || q.stride().Take(3).Any(s => s % 4 != 0)) return false;
        if (qNorm.weight is not { } qw || qNorm.bias is not { } qb || kNorm.weight is not { } kw || kNorm.bias is not { } kb) return false;
        Tensor[] parameters = [qw, qb, kw, kb, rope.Cos, rope.SignedSin];
        if (parameters.Any(p => p.dtype != q.dtype || p.device_type != DeviceType.CUDA || p.device_index != q.device_index || !p.is_contiguous())) return false;
        if (parameters.Take(4).Any(p => p.numel() != HeadDim) || rope.Cos.shape[0] != q.shape[1] || rope.Cos.numel() != q.shape[1] * HeadDim) return false;
        // No backward: only where autograd records nothing.
        if (torch.is_grad_enabled() && (q.requires_grad || k.requires_grad || parameters.Any(p => p.requires_grad))) return false;
        long alignment = 4 * q.ElementSize;
        return new[] { q, k, qw, qb, kw, kb, rope.Cos, rope.SignedSin }.All(t => TensorDataPointer.Of(t) % alignment == 0);
    }

    const string Source = """
        constexpr int kHeadDim = 64;
        constexpr int kLanes = kHeadDim / 4;
        constexpr int kRowsPerLaneGroup = 2;

        // PyTorch's cuWelfordCombine(dataB = own, dataA = partner), written as it is so that the compiler contracts it alike.
        __device__ __forceinline__ void WelfordCombine(float& mean, float& m2, float& count, float meanA, float m2A, float countA)
        {
            float delta = mean - meanA;
            float total = countA + count;
            if (total > 0.f)
            {
                float coef = 1.f / total;
                float nA = countA * coef;
                float nB = count * coef;
                mean = nA * meanA + nB * mean;
                m2 = m2A + m2 + delta * delta * countA * nB;
            }
            else
            {
                mean = 0.f;
                m2 = 0.f;
            }
            count = total;
        }

        template <class T>
        __device__ __forceinline__ void QkNormRope(
            const typename T::Storage* q, const typename T::Storage* k, long long strideB, long long strideN, long long strideH,
            int batch, int tokens, int heads,
            const typename T::Storage* qWeight, const typename T::Storage* qBias,
            const typename T::Storage* kWeight, const typename T::Storage* kBias,
            const typename T::Storage* cosTable, const typename T::Storage* sinTable, float eps, typename T::Storage* out)
        {
            const unsigned all = 0xffffffffu;
            const int lane = threadIdx.x % kLanes;
            const long long rowsPerTensor = (long long)batch * tokens * heads, rows = 2 * rowsPerTensor;
            const long long firstRow = ((long long)blockIdx.x * (blockDim.x / kLanes) + threadIdx.x / kLanes) * kRowsPerLaneGroup;

            // All loads first: a lane group's rows are independent, and more bytes in flight per thread is what a
            // bandwidth-bound kernel with 8-byte (bf16) vectors needs.
            long long row[kRowsPerLaneGroup];
            bool isK[kRowsPerLaneGroup];
            float v[kRowsPerLaneGroup][4], c[kRowsPerLaneGroup][4], s[kRowsPerLaneGroup][4];
            #pragma unroll
            for (int j = 0; j < kRowsPerLaneGroup; j++)
            {
                // Rows past the end redo the last row without storing it, so that every lane joins the shuffles.
                row[j] = firstRow + j < rows ? firstRow + j : rows - 1;
                isK[j] = row[j] >= rowsPerTensor;
                const long long r = isK[j] ? row[j] - rowsPerTensor : row[j];
                const int h = (int)(r % heads);
                const long long bn = r / heads;
                const int n = (int)(bn % tokens);
                const long long b = bn / tokens;
                Load4<T>((isK[j] ? k : q) + b * strideB + n * strideN + h * strideH + lane * 4, v[j]);
                Load4<T>(cosTable + (long long)n * kHeadDim + lane * 4, c[j]);
                Load4<T>(sinTable + (long long)n * kHeadDim + lane * 4, s[j]);
            }

            #pragma unroll
            for (int j = 0; j < kRowsPerLaneGroup; j++)
            {
                // Statistics as PyTorch's vectorized LayerNorm: cuWelfordOnlineSum over the lane's 4 elements, then the
                // shuffle-down combine tree (its first step, with the empty upper half-warp, changes nothing).
                float mean = 0.f, m2 = 0.f, count = 0.f;
                #pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    float delta = v[j][i] - mean;
                    count = count + 1.f;
                    mean = mean + delta * (1.f / count);
                    m2 = m2 + delta * (v[j][i] - mean);
                }
                #pragma unroll
                for (int offset = kLanes / 2; offset > 0; offset /= 2)
                {
                    float meanA = __shfl_down_sync(all, mean, offset, kLanes);
                    float m2A = __shfl_down_sync(all, m2, offset, kLanes);
                    float countA = __shfl_down_sync(all, count, offset, kLanes);
                    WelfordCombine(mean, m2, count, meanA, m2A, countA);
                }
                mean = __shfl_sync(all, mean, 0, kLanes);
                float variance = __shfl_sync(all, m2, 0, kLanes) / float(kHeadDim);
                float rstd = rsqrtf(variance + eps);

                float weight[4], bias[4], y[4], o[4];
                Load4<T>((isK[j] ? kWeight : qWeight) + lane * 4, weight);
                Load4<T>((isK[j] ? kBias : qBias) + lane * 4, bias);
                #pragma unroll
                for (int i = 0; i < 4; i++) y[i] = Round<T>(fmaf(weight[i], rstd * (v[j][i] - mean), bias[i]));

                // RoPE: y·cos + flip(y)·signedSin, each product and the sum rounded to T (three eager kernels). flip swaps
                // the two quarters of each half: element e pairs with e ^ 16, held by lane ^ 4.
                #pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    float partner = __shfl_xor_sync(all, y[i], 4, kLanes);
                    o[i] = __fadd_rn(Round<T>(__fmul_rn(y[i], c[j][i])), Round<T>(__fmul_rn(partner, s[j][i])));
                }
                if (firstRow + j < rows) Store4<T>(out + row[j] * kHeadDim + lane * 4, o);
            }
        }

        #define QK_NORM_ROPE(T, suffix)                                                                                     \
            extern "C" __global__ void __launch_bounds__(128) vggt_qk_norm_rope_##suffix(                                    \
                const T::Storage* q, const T::Storage* k, long long strideB, long long strideN, long long strideH,           \
                int batch, int tokens, int heads, const T::Storage* qWeight, const T::Storage* qBias,                        \
                const T::Storage* kWeight, const T::Storage* kBias, const T::Storage* cosTable, const T::Storage* sinTable,   \
                float eps, T::Storage* out)                                                                                  \
            {                                                                                                                \
                QkNormRope<T>(q, k, strideB, strideN, strideH, batch, tokens, heads, qWeight, qBias, kWeight, kBias,         \
                              cosTable, sinTable, eps, out);                                                                 \
            }
        QK_NORM_ROPE(Float32, f32)
        QK_NORM_ROPE(BFloat16, bf16)
        QK_NORM_ROPE(Float16, f16)

        """;
}
