using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The kernels of the bf16 CUDA decode step (<see cref="Qwen2DecodeFastPath"/>'s captured step), each replacing several of
/// the TorchScript step's ops with one launch (decode_kernels.cu):
/// <list type="bullet">
/// <item><see cref="Linear"/>: a GEMV for 1–8 tokens that streams each weight row once for all of them, with the input's
/// RMSNorm, the bias and the residual add fused in;</item>
/// <item><see cref="SwiGlu"/>: the MLP's gate and up GEMVs (after post_attention_layernorm) and <c>silu(gate)·up</c>;</item>
/// <item><see cref="RotateAndCache"/>: M-RoPE of q and k and the write of k and v into the cache slot.</item>
/// </list>
/// At batch 1 cuBLAS spends a GEMM's machinery on a vector and every element-wise op is its own launch of a few
/// microseconds against weights that take a few microseconds to stream; these halve the launches of a layer (20 → 6)
/// and read the weights at the card's bandwidth. Each op's result is rounded to bf16 where the eager op's is, so the
/// step differs from the script only in the order of each dot product's sums (bf16 noise, held by the GPU tests).
/// </summary>
internal static unsafe class Qwen2DecodeKernels
{
    /// <summary>Tokens a launch serves (the kernels keep one accumulator per token in registers).</summary>
    public const int MaxTokens = 8;

    const int ThreadsPerBlock = 256, WarpsPerBlock = ThreadsPerBlock / 32, ElementsPerLoad = 8;
    /// <summary>Static shared memory a block may have without opting in; a normalised input is staged there.</summary>
    const int SharedMemoryBytes = 48 * 1024;
    /// <summary>Blocks of a GEMV over a normalised input at most (the head's 152k rows): each block stages the input
    /// once, and its warps then loop over rows. Other GEMVs give each warp one row.</summary>
    const int MaxNormalisingBlocks = 4096;

    static readonly CompiledCudaModule Module = new("qwen_decode", CudaSources.Read("decode_kernels.cu"));

    /// <summary>
    /// Whether the kernels serve a decode step of <paramref name="tokens"/> rows of width <paramref name="hidden"/> and
    /// MLP width <paramref name="intermediate"/> on <paramref name="device"/> in <paramref name="dtype"/>: bf16 on CUDA,
    /// widths in whole 16-byte loads, a normalised input that fits shared memory, the module built.
    /// </summary>
    public static bool Serve(Device device, ScalarType dtype, long tokens, long hidden, long intermediate, long headDim) =>
        device.type == DeviceType.CUDA && dtype == ScalarType.BFloat16 && tokens is >= 1 and <= MaxTokens
        && hidden % ElementsPerLoad == 0 && intermediate % ElementsPerLoad == 0 && headDim % 2 == 0
        && tokens * hidden * 2 <= SharedMemoryBytes
        && Module.TryGetFunction(device.index < 0 ? 0 : device.index, "qwen_decode_gemv_bf16", out _);

    /// <summary>Why the kernels could not be built here (null while they could, or have not been tried).</summary>
    public static string? FailureReason => Module.FailureReason;

    /// <summary>
    /// <c>linear(norm(x), weight, bias) + residual</c>: x [T, K] bf16 contiguous, weight [N, K], bias [N] or null,
    /// <paramref name="normWeight"/> [K] (Qwen2RMSNorm of x first, with <paramref name="eps"/>) or null, residual [T, N]
    /// or null (added after the linear's rounding, as <c>add_</c> does) → [T, N].
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null, Tensor? normWeight = null, double eps = 0, Tensor? residual = null)
    {
        long tokens = x.shape[0], k = x.shape[1], rows = weight.shape[0];
        Check(x, weight, k);
        var y = torch.empty([tokens, rows], ScalarType.BFloat16, x.device);
        IntPtr w = Address(weight), xData = Address(x), norm = AddressOrZero(normWeight), b = AddressOrZero(bias),
            res = AddressOrZero(residual), yData = Address(y);
        int rows32 = checked((int)rows), k32 = checked((int)k), tokens32 = checked((int)tokens);
        float eps32 = (float)eps;
        void** arguments = stackalloc void*[] { &w, &rows32, &k32, &xData, &tokens32, &norm, &eps32, &b, &res, &yData };
        Launch(x, "qwen_decode_gemv_bf16", GemvBlocks(rows, normalising: normWeight is not null), normWeight is null ? 0 : tokens * k * 2, arguments);
        return y;
    }

    /// <summary><c>silu(linear(n, gate)) · linear(n, up)</c> with n = Qwen2RMSNorm(x) (<paramref name="normWeight"/>,
    /// <paramref name="eps"/>): x [T, K] → [T, N].</summary>
    public static Tensor SwiGlu(Tensor x, Tensor gate, Tensor up, Tensor normWeight, double eps)
    {
        long tokens = x.shape[0], k = x.shape[1], rows = gate.shape[0];
        Check(x, gate, k);
        Check(x, up, k);
        var y = torch.empty([tokens, rows], ScalarType.BFloat16, x.device);
        IntPtr g = Address(gate), u = Address(up), xData = Address(x), norm = Address(normWeight), yData = Address(y);
        int rows32 = checked((int)rows), k32 = checked((int)k), tokens32 = checked((int)tokens);
        float eps32 = (float)eps;
        void** arguments = stackalloc void*[] { &g, &u, &rows32, &k32, &xData, &tokens32, &norm, &eps32, &yData };
        Launch(x, "qwen_decode_swiglu_bf16", GemvBlocks(rows, normalising: true), tokens * k * 2, arguments);
        return y;
    }

    /// <summary>
    /// The rotary embedding of q and k from <paramref name="qkv"/> [T, (heads + 2·kvHeads)·d] (q, k, v projections with
    /// bias) with <paramref name="cos"/>, <paramref name="signedSin"/> [T, d] bf16, and the write of k and v into
    /// <paramref name="keys"/>, <paramref name="values"/> [T, kvHeads, capacity, d] at slot <paramref name="position"/>
    /// [1] int64 (on the device) → q [T, heads, 1, d].
    /// </summary>
    public static Tensor RotateAndCache(Tensor qkv, Tensor cos, Tensor signedSin, Tensor position, Tensor keys, Tensor values, int heads, int kvHeads, int headDim)
    {
        long tokens = qkv.shape[0];
        if (!keys.is_contiguous() || !values.is_contiguous() || !cos.is_contiguous() || !signedSin.is_contiguous() || !qkv.is_contiguous())
            throw new ArgumentException("The decode kernels read contiguous qkv, tables and cache buffers.");
        var q = torch.empty([tokens, heads, 1, headDim], ScalarType.BFloat16, qkv.device);
        IntPtr qkvData = Address(qkv), cosData = Address(cos), sinData = Address(signedSin), positionData = Address(position),
            keyData = Address(keys), valueData = Address(values), qData = Address(q);
        int tokens32 = checked((int)tokens);
        long capacity = keys.shape[2];
        void** arguments = stackalloc void*[] { &qkvData, &tokens32, &heads, &kvHeads, &headDim, &cosData, &sinData, &positionData, &keyData, &valueData, &capacity, &qData };
        long elements = tokens * (heads + 2L * kvHeads) * headDim;
        Launch(qkv, "qwen_decode_rope_cache_bf16", CompiledCudaModule.BlockCount(elements, ThreadsPerBlock), 0, arguments);
        return q;
    }

    static void Check(Tensor x, Tensor weight, long k)
    {
        if (x.dtype != ScalarType.BFloat16 || weight.dtype != ScalarType.BFloat16 || !x.is_contiguous() || !weight.is_contiguous()
            || weight.dim() != 2 || weight.shape[1] != k || x.shape[0] > MaxTokens)
            throw new ArgumentException($"The decode GEMV takes contiguous bf16 x [≤ {MaxTokens}, K] and weight [N, K]; got x [{string.Join(", ", x.shape)}] {x.dtype}, weight [{string.Join(", ", weight.shape)}] {weight.dtype}.");
    }

    /// <summary>A warp per row, or at most <see cref="MaxNormalisingBlocks"/> blocks when each stages a normalised input.</summary>
    static uint GemvBlocks(long rows, bool normalising)
    {
        long blocks = (rows + WarpsPerBlock - 1) / WarpsPerBlock;
        return checked((uint)(normalising ? Math.Min(blocks, MaxNormalisingBlocks) : blocks));
    }

    /// <summary>Launches <paramref name="kernel"/> on <paramref name="x"/>'s device, blocks of <see cref="ThreadsPerBlock"/>.</summary>
    static void Launch(Tensor x, string kernel, uint blocks, long sharedBytes, void** arguments)
    {
        int device = x.device_index;
        if (!Module.TryGetFunction(device, kernel, out var function))
            throw new InvalidOperationException($"The decode kernels are unavailable: {Module.FailureReason}");
        CompiledCudaModule.Launch(device, function, kernel, blocks, ThreadsPerBlock, arguments, checked((uint)sharedBytes));
    }

    static IntPtr Address(Tensor t) => TensorAddress.Of(t);

    static IntPtr AddressOrZero(Tensor? t) => t is null ? IntPtr.Zero : TensorAddress.Of(t);
}
