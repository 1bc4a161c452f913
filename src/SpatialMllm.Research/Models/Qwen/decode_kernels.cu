// The bf16 decode step's kernels (Qwen2DecodeKernels): a GEMV for 1–8 tokens that reads each weight row once for all of
// them, with the epilogues the step needs fused in (the input's RMSNorm, bias, residual, SwiGLU), and RoPE of q and k
// with the cache write of k and v. Rounding follows the eager ops they replace: each op's result rounded to bf16.

#define MAX_TOKENS 8
#define WARPS_PER_BLOCK 8

typedef unsigned short bf16;

struct alignas(16) Bf16x8 { bf16 x[8]; };

__device__ __forceinline__ float WarpSum(float v)
{
    #pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float Bf16ToFloat(bf16 v) { return BFloat16::ToFloat(v); }
__device__ __forceinline__ bf16 FloatToBf16(float v) { return BFloat16::FromFloat(v); }

// Weights are read once per step: stream them past L1 (ld.global.cs), keep the small inputs cached.
__device__ __forceinline__ Bf16x8 LoadWeights8(const bf16* p)
{
    unsigned raw[4];
    asm("ld.global.cs.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(raw[0]), "=r"(raw[1]), "=r"(raw[2]), "=r"(raw[3]) : "l"(p));
    return *reinterpret_cast<Bf16x8*>(raw);
}

__device__ __forceinline__ Bf16x8 Load8(const bf16* p) { return *reinterpret_cast<const Bf16x8*>(p); }

// The GEMV's input rows: x [tokens, K] itself, or with normWeight transformers' Qwen2RMSNorm of each row staged in
// shared memory — hidden·rsqrt(mean(hidden²) + eps) in fp32 rounded to bf16, then weight · that rounded to bf16.
__device__ const bf16* StageInput(const bf16* x, int tokens, int k, const bf16* normWeight, float eps, bf16* staged)
{
    if (normWeight == nullptr) return x;
    __shared__ float partial[WARPS_PER_BLOCK];
    __shared__ float rstd[MAX_TOKENS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int t = 0; t < tokens; t++)
    {
        {
            float sum = 0.f;
            for (int i = threadIdx.x; i < k; i += blockDim.x)
            {
                float v = Bf16ToFloat(x[(long long)t * k + i]);
                sum += v * v;
            }
            sum = WarpSum(sum);
            if (lane == 0) partial[warp] = sum;
            __syncthreads();
            if (threadIdx.x == 0)
            {
                float total = 0.f;
                for (int w = 0; w < WARPS_PER_BLOCK; w++) total += partial[w];
                rstd[t] = rsqrtf(total / k + eps);
            }
            __syncthreads();
        }
        const float scale = rstd[t];
        for (int i = threadIdx.x; i < k; i += blockDim.x)
        {
            float normed = Bf16ToFloat(FloatToBf16(Bf16ToFloat(x[(long long)t * k + i]) * scale));
            staged[t * k + i] = FloatToBf16(Bf16ToFloat(normWeight[i]) * normed);
        }
    }
    __syncthreads();
    return staged;
}

// Σ_k w_r[k] · input[t, k] for R weight rows w_r at once (a row, or the gate and up rows of one output) and each of the
// tokens; a warp per row group, 8 weights a lane per 16-byte load, 8 loads a lane in flight (a 2048-wide row is then
// read in one go). Leaves the sums in acc on every lane.
template <int R>
__device__ __forceinline__ void RowDot(const bf16* const (&w)[R], int k, const bf16* input, int tokens, float (&acc)[R][MAX_TOKENS])
{
    const int lane = threadIdx.x & 31;
    #pragma unroll
    for (int r = 0; r < R; r++)
        #pragma unroll
        for (int t = 0; t < MAX_TOKENS; t++) acc[r][t] = 0.f;
    #pragma unroll 8
    for (int i = lane * 8; i < k; i += 32 * 8)
    {
        Bf16x8 weights[R];
        #pragma unroll
        for (int r = 0; r < R; r++) weights[r] = LoadWeights8(w[r] + i);
        #pragma unroll
        for (int t = 0; t < MAX_TOKENS; t++)
        {
            if (t < tokens)
            {
                Bf16x8 xs = Load8(input + t * k + i);
                #pragma unroll
                for (int j = 0; j < 8; j++)
                {
                    const float xv = Bf16ToFloat(xs.x[j]);
                    #pragma unroll
                    for (int r = 0; r < R; r++) acc[r][t] = fmaf(Bf16ToFloat(weights[r].x[j]), xv, acc[r][t]);
                }
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < R; r++)
        #pragma unroll
        for (int t = 0; t < MAX_TOKENS; t++) if (t < tokens) acc[r][t] = WarpSum(acc[r][t]);
}

// Token `lane`'s sum of row r (the sums are the same on every lane after the reduction; registers are indexed statically).
template <int R>
__device__ __forceinline__ float LaneSum(const float (&acc)[R][MAX_TOKENS], int r, int lane)
{
    float sum = 0.f;
    #pragma unroll
    for (int t = 0; t < MAX_TOKENS; t++) if (t == lane) sum = acc[r][t];
    return sum;
}

// y[t, n] = bf16(w[n]·input[t] + bias[n]) (+ residual[t, n], rounded again: linear then add_), input = x or its RMSNorm.
// Dynamic shared memory: tokens · k bf16 with normWeight, else none.
extern "C" __global__ void __launch_bounds__(256) qwen_decode_gemv_bf16(
    const bf16* w, int rows, int k, const bf16* x, int tokens, const bf16* normWeight, float eps, const bf16* bias,
    const bf16* residual, bf16* y)
{
    extern __shared__ __align__(16) bf16 input[];
    const bf16* in = StageInput(x, tokens, k, normWeight, eps, input);
    const int lane = threadIdx.x & 31;
    for (int n = blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5); n < rows; n += gridDim.x * WARPS_PER_BLOCK)
    {
        const bf16* const row[1] = { w + (long long)n * k };
        float acc[1][MAX_TOKENS];
        RowDot<1>(row, k, in, tokens, acc);
        if (lane < tokens)
        {
            // Lane t writes token t's result.
            float sum = LaneSum<1>(acc, 0, lane);
            if (bias != nullptr) sum += Bf16ToFloat(bias[n]);
            float value = Bf16ToFloat(FloatToBf16(sum));
            if (residual != nullptr) value = value + Bf16ToFloat(residual[(long long)lane * rows + n]);
            y[(long long)lane * rows + n] = FloatToBf16(value);
        }
    }
}

// The MLP's first half: y[t, n] = silu(gate[n]·input[t]) · (up[n]·input[t]), input = the RMSNorm of x, each of
// linear, silu_ and mul_ rounded to bf16 as the eager ops are.
extern "C" __global__ void __launch_bounds__(256) qwen_decode_swiglu_bf16(
    const bf16* gate, const bf16* up, int rows, int k, const bf16* x, int tokens, const bf16* normWeight, float eps, bf16* y)
{
    extern __shared__ __align__(16) bf16 input[];
    const bf16* in = StageInput(x, tokens, k, normWeight, eps, input);
    const int lane = threadIdx.x & 31;
    for (int n = blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5); n < rows; n += gridDim.x * WARPS_PER_BLOCK)
    {
        const bf16* const rows2[2] = { gate + (long long)n * k, up + (long long)n * k };
        float acc[2][MAX_TOKENS];
        RowDot<2>(rows2, k, in, tokens, acc);
        if (lane < tokens)
        {
            float gv = Bf16ToFloat(FloatToBf16(LaneSum<2>(acc, 0, lane))), uv = LaneSum<2>(acc, 1, lane);
            float activated = Bf16ToFloat(FloatToBf16(gv / (1.f + expf(-gv))));
            y[(long long)lane * rows + n] = FloatToBf16(activated * Bf16ToFloat(FloatToBf16(uv)));
        }
    }
}

// RoPE of q and k from the qkv projection [tokens, (heads + 2·kvHeads)·d] and the cache write of k and v at slot
// *position of keys/values [tokens, kvHeads, capacity, d] (contiguous): q goes to q_out [tokens, heads, d]. As the eager
// step: rotated = x·cos, then + flip(x)·signedSin, each product and the sum rounded to bf16. A thread per element.
extern "C" __global__ void __launch_bounds__(256) qwen_decode_rope_cache_bf16(
    const bf16* qkv, int tokens, int heads, int kvHeads, int d, const bf16* cos, const bf16* signedSin,
    const long long* position, bf16* keys, bf16* values, long long capacity, bf16* qOut)
{
    const int width = (heads + 2 * kvHeads) * d;
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)tokens * width) return;
    const int t = (int)(index / width), column = (int)(index % width);
    const int head = column / d, e = column % d, half = d / 2;
    const bf16* row = qkv + (long long)t * width;
    float value = Bf16ToFloat(row[column]);
    if (head < heads + kvHeads)
    {
        const int partner = e < half ? column + half : column - half;
        float c = Bf16ToFloat(cos[t * d + e]), s = Bf16ToFloat(signedSin[t * d + e]);
        float rotated = Bf16ToFloat(FloatToBf16(value * c));
        float swapped = Bf16ToFloat(FloatToBf16(Bf16ToFloat(row[partner]) * s));
        value = rotated + swapped;
    }
    const bf16 out = FloatToBf16(value);
    if (head < heads)
    {
        qOut[((long long)t * heads + head) * d + e] = out;
        return;
    }
    const bool isKey = head < heads + kvHeads;
    const int kvHead = isKey ? head - heads : head - heads - kvHeads;
    bf16* cache = isKey ? keys : values;
    cache[(((long long)t * kvHeads + kvHead) * capacity + *position) * d + e] = out;
}
