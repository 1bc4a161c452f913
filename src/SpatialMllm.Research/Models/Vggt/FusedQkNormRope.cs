using SpatialMllm.Research.Runtime;
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

    static readonly CompiledCudaModule Module = new("vggt_qk_norm_rope", CudaSources.Read("qk_norm_rope.cu"));

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
        IntPtr qData = TensorAddress.Of(q), kData = TensorAddress.Of(k);
        IntPtr qWeight = TensorAddress.Of(qNorm.weight!), qBias = TensorAddress.Of(qNorm.bias!);
        IntPtr kWeight = TensorAddress.Of(kNorm.weight!), kBias = TensorAddress.Of(kNorm.bias!);
        IntPtr cos = TensorAddress.Of(rope.Cos), sin = TensorAddress.Of(rope.SignedSin), outData = TensorAddress.Of(output);
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
        return new[] { q, k, qw, qb, kw, kb, rope.Cos, rope.SignedSin }.All(t => TensorAddress.Of(t) % alignment == 0);
    }
}
