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
