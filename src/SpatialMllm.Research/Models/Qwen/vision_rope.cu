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
