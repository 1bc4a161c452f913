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

    /// <summary>
    /// The bf16 decode step's GEMVs (Qwen2DecodeKernels) against the eager ops they replace, at Qwen2.5-VL-3B's shapes and
    /// 1 or 3 tokens: QKV with input_layernorm and bias, o_proj and down_proj with the residual, gate/up with SwiGLU, the
    /// head with the final norm. Only each dot product's order of sums differs, so an output may round to the bf16
    /// neighbour of the eager one: one unit in the last place of the linear's output (two after a residual add or a bias
    /// cuBLAS may add after its own rounding, three through SwiGLU's roundings).
    /// </summary>
    [Theory, InlineData(1), InlineData(3)]
    public void Decode_gemv_kernels_equal_the_eager_ops_within_their_rounding(int tokens)
    {
        var cuda = Gpu.RequireCuda();
        RequireFusedKernels();
        const int hidden = 2048, intermediate = 11008, qkvWidth = 2560, vocab = 151936;
        const double eps = 1e-6;
        var bf16 = ScalarType.BFloat16;
        Assert.True(Qwen2DecodeKernels.Serve(cuda, bf16, tokens, hidden, intermediate, 128), $"the decode kernels do not serve the 3B model here: {Qwen2DecodeKernels.FailureReason}");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(4);
        Tensor Weight(long rows, long k) => torch.randn(rows, k, bf16, cuda).mul_(1 / Math.Sqrt(k));
        var x = torch.randn(tokens, hidden, bf16, cuda).mul_(4);
        var norm = torch.randn(hidden, bf16, cuda).mul_(0.2).add_(1);
        Tensor Normed(Tensor t) { var t32 = t.to(ScalarType.Float32); return norm * (t32 * t32.pow(2).mean([-1], keepdim: true).add(eps).rsqrt()).to(bf16); }

        var qkvWeight = Weight(qkvWidth, hidden);
        var qkvBias = torch.randn(qkvWidth, bf16, cuda);
        AssertWithinRounding("QKV with input_layernorm and bias", nn.functional.linear(Normed(x), qkvWeight, qkvBias), null,
            Qwen2DecodeKernels.Linear(x, qkvWeight, bias: qkvBias, normWeight: norm, eps: eps), roundings: 2);

        var attended = torch.randn(tokens, hidden, bf16, cuda);
        var o = Weight(hidden, hidden);
        var oLinear = nn.functional.linear(attended, o);
        AssertWithinRounding("o_proj with the residual", oLinear, oLinear + x, Qwen2DecodeKernels.Linear(attended, o, residual: x), roundings: 2);

        Tensor gate = Weight(intermediate, hidden), up = Weight(intermediate, hidden);
        var n = Normed(x);
        var swiglu = nn.functional.silu(nn.functional.linear(n, gate)) * nn.functional.linear(n, up);
        AssertWithinRounding("gate/up with post_attention_layernorm and SwiGLU", swiglu, null, Qwen2DecodeKernels.SwiGlu(x, gate, up, norm, eps), roundings: 3);

        var gated = torch.randn(tokens, intermediate, bf16, cuda);
        var down = Weight(hidden, intermediate);
        var downLinear = nn.functional.linear(gated, down);
        AssertWithinRounding("down_proj with the residual", downLinear, downLinear + x, Qwen2DecodeKernels.Linear(gated, down, residual: x), roundings: 2);

        var head = Weight(vocab, hidden);
        AssertWithinRounding("head with the final norm", nn.functional.linear(Normed(x), head), null, Qwen2DecodeKernels.Linear(x, head, normWeight: norm, eps: eps));
    }

    /// <summary>The decode step's M-RoPE of q and k and its cache write (Qwen2DecodeKernels.RotateAndCache) against the
    /// script's ops: the same roundings, so the same bits; v lands in the cache unchanged; other slots stay.</summary>
    [Theory, InlineData(1), InlineData(3)]
    public void Decode_rope_cache_kernel_equals_the_eager_ops(int tokens)
    {
        var cuda = Gpu.RequireCuda();
        RequireFusedKernels();
        const int heads = 16, kvHeads = 2, d = 128, capacity = 40, slot = 37;
        var bf16 = ScalarType.BFloat16;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(5);
        var qkv = torch.randn(tokens, (heads + 2 * kvHeads) * d, bf16, cuda).mul_(3);
        var angles = torch.rand(tokens, d, ScalarType.Float32, cuda).mul_(1000);
        var cos = angles.cos().to(bf16);
        var signedSin = RotaryEmbedding.SignedSin(angles.sin().to(bf16));
        var keys = torch.randn(tokens, kvHeads, capacity, d, bf16, cuda);
        var values = torch.randn(tokens, kvHeads, capacity, d, bf16, cuda);
        Tensor keysBefore = keys.clone(), valuesBefore = values.clone();
        var position = torch.tensor(new long[] { slot }, ScalarType.Int64, cuda);

        var q = Qwen2DecodeKernels.RotateAndCache(qkv, cos, signedSin, position, keys, values, heads, kvHeads, d);

        // The script: rotated = qk·cos, then += flip(qk)·signedSin, each rounded to bf16.
        var qk = qkv.narrow(1, 0, (heads + kvHeads) * d).view(tokens, heads + kvHeads, d);
        var swapped = qk.view(tokens, heads + kvHeads, 2, d / 2).flip(-2).view(tokens, heads + kvHeads, d);
        var rotated = (qk * cos.unsqueeze(1)).add_(swapped * signedSin.unsqueeze(1));
        Assert.True(q.view(tokens, heads, d).eq(rotated.narrow(1, 0, heads)).all().item<bool>(), "q differs from the script's RoPE");
        Assert.True(keys.select(2, slot).eq(rotated.narrow(1, heads, kvHeads)).all().item<bool>(), "the cached k differs from the script's RoPE");
        Assert.True(values.select(2, slot).eq(qkv.narrow(1, (heads + kvHeads) * d, kvHeads * d).view(tokens, kvHeads, d)).all().item<bool>(), "the cached v differs from v");
        var others = torch.arange(capacity, device: cuda).ne(slot);
        Assert.True(keys.index_select(2, others.nonzero().flatten()).eq(keysBefore.index_select(2, others.nonzero().flatten())).all().item<bool>(), "other key slots changed");
        Assert.True(values.index_select(2, others.nonzero().flatten()).eq(valuesBefore.index_select(2, others.nonzero().flatten())).all().item<bool>(), "other value slots changed");
        Gpu.Report($"decode RoPE + cache write, {tokens} token(s)", ["bit-equal to the script's ops"]);
    }

    /// <summary>
    /// <paramref name="actual"/> against the eager result <paramref name="linear"/> (then <paramref name="final"/> = after
    /// the residual add, when there is one): within <paramref name="roundings"/> bf16 units in the last place of the
    /// linear's magnitude, element by element. Magnitudes count from 1/64 of the output's RMS: a sum that cancels to
    /// nearly zero keeps the fp32 error of its large terms, whichever the order.
    /// </summary>
    static void AssertWithinRounding(string what, Tensor linear, Tensor? final, Tensor actual, int roundings = 1)
    {
        var expected = final ?? linear;
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.to(ScalarType.Float64, CPU);
        var a = actual.to(ScalarType.Float64, CPU);
        var l = linear.to(ScalarType.Float64, CPU);
        double floor = Math.Max(l.pow(2).mean().sqrt().item<double>() / 64, 1e-30);
        var magnitude = torch.maximum(torch.maximum(e.abs(), a.abs()), l.abs()).clamp_min(floor);
        var ulp = torch.exp2(torch.floor(torch.log2(magnitude)) - 7);
        double worst = ((a - e).abs() / ulp).max().item<double>();
        long equal = actual.eq(expected).sum().item<long>(), total = expected.numel();
        Gpu.Report($"decode kernel: {what}", [$"max diff {worst:F2} ulp; equal elements {equal}/{total}"]);
        Assert.True(worst <= roundings, $"{what}: {worst:F2} ulp from the eager ops (at most {roundings} allowed)");
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
