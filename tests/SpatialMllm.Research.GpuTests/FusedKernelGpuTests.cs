using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.GpuTests;

/// <summary>
/// Each fast CUDA path against the eager formula it replaces, on the full-size model's shapes (16 frames at 476×644):
/// float32 within 1e-6, bfloat16 within one unit in the last place.
/// </summary>
public sealed class FusedKernelGpuTests
{
    const int Frames = 16, GridH = 476 / 14, GridW = 644 / 14, SpecialTokens = 5, Heads = 16;
    const long TokensPerFrame = SpecialTokens + GridH * GridW;

    public static TheoryData<string, bool> AttentionKinds => new()
    {
        { "float32", true }, { "float32", false }, { "bfloat16", true }, { "bfloat16", false },
    };

    [Theory, MemberData(nameof(AttentionKinds))]
    public void Vggt_qk_layernorm_rope_kernel_equals_eager(string dtypeName, bool global)
    {
        var cuda = Gpu.RequireCuda();
        RequireFusedKernels();
        var dtype = Runtime.TorchRuntime.ParseDType(dtypeName);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        // Global attention: one sequence of every frame's tokens; frame attention: a sequence per frame.
        long batch = global ? 1 : Frames, tokens = global ? Frames * TokensPerFrame : TokensPerFrame;
        int repeats = global ? Frames : 1;
        const int headDim = FusedQkNormRope.HeadDim;
        var qkv = torch.randn(batch, tokens, 3 * Heads * headDim, dtype, cuda).mul_(2).add_(0.5)
            .view(batch, tokens, 3, Heads, headDim);
        Tensor q = qkv.select(2, 0), k = qkv.select(2, 1);
        var qNorm = nn.LayerNorm(headDim, device: cuda, dtype: dtype);
        var kNorm = nn.LayerNorm(headDim, device: cuda, dtype: dtype);
        foreach (var p in qNorm.parameters().Concat(kNorm.parameters())) p.copy_(torch.randn_like(p).mul_(0.5).add_(0.5));
        using var rope = Rope2D.Create(GridH, GridW, SpecialTokens, repeats, headDim, dtype, cuda);

        var fused = FusedQkNormRope.TryApply(q, k, qNorm, kNorm, 1e-5, rope);
        Assert.NotNull(fused);
        var eager = torch.stack([rope.Apply(qNorm.forward(q)), rope.Apply(kNorm.forward(k))]);
        AssertClose($"VGGT q/k LayerNorm+RoPE {(global ? "global" : "frame")} [{batch}, {tokens}, {Heads}, {headDim}]", eager, fused, dtype);
    }

    [Theory, InlineData("float32"), InlineData("bfloat16")]
    public void Vision_rope_kernel_equals_eager(string dtypeName)
    {
        var cuda = Gpu.RequireCuda();
        RequireFusedKernels();
        var dtype = Runtime.TorchRuntime.ParseDType(dtypeName);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(2);
        const int headDim = 80;
        long tokens = Frames / 2 * GridH * GridW;
        // The vision attention's q and k: selects of its qkv projection, heads interleaved as the model lays them out.
        var qk = torch.randn(tokens, 3 * Heads * headDim, dtype, cuda).reshape(tokens, 3, Heads, headDim).permute(1, 0, 2, 3).narrow(0, 0, 2);
        var angles = torch.rand(tokens, 1, headDim, ScalarType.Float32, cuda).mul_(100);
        Tensor cos = angles.cos(), signedSin = RotaryEmbedding.SignedSin(angles.sin());

        var fused = FusedVisionRope.TryApply(qk, cos, signedSin);
        Assert.NotNull(fused);
        var eager = RotaryEmbedding.ApplyPromoted(qk, cos, signedSin).to(dtype);
        AssertClose($"vision q/k RoPE [2, {tokens}, {Heads}, {headDim}]", eager, fused, dtype);
    }

    /// <summary>libtorch's fused rms_norm through TorchScript (what Qwen2RmsNorm and the decode script run on CUDA in
    /// bf16) against transformers' formula.</summary>
    [Theory, InlineData("float32", 2048), InlineData("bfloat16", 2048), InlineData("float32", 1280), InlineData("bfloat16", 1280)]
    public void Fused_rms_norm_equals_the_transformers_formula(string dtypeName, int hidden)
    {
        var cuda = Gpu.RequireCuda();
        var dtype = Runtime.TorchRuntime.ParseDType(dtypeName);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(3);
        const double eps = 1e-6;
        using var norm = new Qwen2RmsNorm(hidden, eps, cuda, dtype);
        foreach (var p in norm.parameters()) p.copy_(torch.randn_like(p).mul_(0.5).add_(1));
        var x = torch.randn(3190, hidden, dtype, cuda).mul_(3);

        var fused = TorchScriptOps.RmsNorm(x, norm.Weight, eps);
        // transformers: statistics in fp32, cast back to the input dtype, then the weight multiply.
        var x32 = x.to(ScalarType.Float32);
        var formula = norm.Weight * (x32 * x32.pow(2).mean([-1], keepdim: true).add(eps).rsqrt()).to(dtype);
        AssertClose($"rms_norm [3190, {hidden}]", formula, fused, dtype);
    }

    /// <summary>On a GPU machine the kernels must compile and load: a silent fallback would leave them untested.</summary>
    static void RequireFusedKernels()
    {
        string? why = CudaDriver.UnavailableReason ?? Nvrtc.UnavailableReason;
        Assert.True(why is null, $"the fused kernels are unavailable on this GPU machine: {why}");
    }

    /// <summary>Arguments as in every comparison here and in xunit: expected, then actual.</summary>
    static void AssertClose(string what, Tensor expected, Tensor actual, ScalarType dtype)
    {
        Assert.Equal(expected.shape, actual.shape);
        long equal = actual.eq(expected).sum().item<long>(), total = expected.numel();
        if (dtype == ScalarType.Float32)
        {
            double maxAbs = Gpu.MaxAbs(expected, actual), scale = expected.abs().max().item<float>();
            Gpu.Report($"{what} float32", [$"max abs diff {maxAbs:E2} (largest |value| {scale:F2}); equal elements {equal}/{total}"]);
            Assert.True(maxAbs <= 1e-6 * Math.Max(1, scale), $"{what}: max abs diff {maxAbs:E2} > 1e-6 × {Math.Max(1, scale):F2}");
        }
        else
        {
            double ulps = Gpu.MaxUlps(expected, actual, mantissaBits: 7);
            Gpu.Report($"{what} bfloat16", [$"max diff {ulps:F2} ulp; equal elements {equal}/{total}"]);
            Assert.True(ulps <= 1, $"{what}: {ulps:F2} ulp apart in bfloat16 (at most 1 allowed)");
        }
    }
}
