using System.Diagnostics;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Benchmarks;

/// <summary>
/// The run-time-compiled fused kernels against the eager paths they replace, on cuda: per kernel, max abs difference,
/// how many elements are equal, and the time of one call (q and k) each way; then the VGGT aggregator (random weights,
/// bf16, 16 frames at 476×644) and the Qwen2.5-VL-3B vision tower (grid 8×34×46) with the fused kernels on and off.
/// </summary>
internal static class KernelCheck
{
    const int Frames = 16, Height = 476, Width = 644, Heads = 16;

    public static JsonObject Run(int runs)
    {
        var cuda = Timing.Cuda;
        using var noGrad = torch.no_grad();
        torch.manual_seed(0);
        var result = new JsonObject
        {
            ["gpu"] = MainStages.GpuName(), ["runs"] = runs,
            ["cuda_driver"] = CudaDriver.UnavailableReason ?? "available", ["nvrtc"] = Nvrtc.UnavailableReason ?? "available",
        };
        Console.WriteLine($"CUDA driver: {result["cuda_driver"]}; NVRTC: {result["nvrtc"]}");

        var kernels = new JsonObject();
        result["kernels"] = kernels;
        // Global attention (one sequence of all frames' tokens) and frame attention (a sequence per frame).
        long gridH = Height / 14, gridW = Width / 14, tokensPerFrame = 5 + gridH * gridW;
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float32 })
        {
            kernels[$"vggt_qk_norm_rope_global_{Name(dtype)}"] = VggtQkCheck(1, Frames * tokensPerFrame, Frames, gridH, gridW, dtype, runs);
            kernels[$"vggt_qk_norm_rope_frame_{Name(dtype)}"] = VggtQkCheck(Frames, tokensPerFrame, 1, gridH, gridW, dtype, runs);
        }
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float32 })
            kernels[$"qwen_vision_rope_{Name(dtype)}"] = VisionRopeCheck(Frames / 2 * gridH * gridW, 80, dtype, runs);

        result["vggt_aggregator"] = FusedOnOff("VGGT aggregator", runs, () =>
        {
            var aggregator = new VggtAggregator(SpatialEncoderConfig.Vggt1B, cuda, ScalarType.BFloat16);
            var frames = torch.rand(Frames, 3, Height, Width, ScalarType.BFloat16, cuda);
            return (aggregator, () => aggregator.ForwardLayer(frames, -1));
        });
        result["vision_tower"] = FusedOnOff("vision tower", runs, () =>
        {
            var config = new Qwen2VisionConfig(32, 1280, 3420, Heads, 3, 2048, 14, 2, 2, 112, [7, 15, 23, 31], 2, "silu");
            var tower = new Qwen2VisionTransformer(config, cuda, ScalarType.BFloat16);
            var grid = new GridThw(Frames / 2, Height / 14, Width / 14);
            var pixels = torch.randn(grid.PatchCount, 3 * 2 * 14 * 14, ScalarType.BFloat16, cuda);
            var gridTensor = grid.ToTensor().to(cuda);
            return (tower, () => tower.forward(pixels, gridTensor));
        });
        return result;
    }

    static JsonObject VggtQkCheck(long batch, long tokens, int repeats, long gridH, long gridW, ScalarType dtype, int runs)
    {
        using var scope = torch.NewDisposeScope();
        var cuda = Timing.Cuda;
        var qkv = torch.randn(batch, tokens, 3 * Heads * FusedQkNormRope.HeadDim, dtype, cuda).mul_(2).add_(0.5)
            .view(batch, tokens, 3, Heads, FusedQkNormRope.HeadDim);
        Tensor q = qkv.select(2, 0), k = qkv.select(2, 1);
        var qNorm = nn.LayerNorm(FusedQkNormRope.HeadDim, device: cuda, dtype: dtype);
        var kNorm = nn.LayerNorm(FusedQkNormRope.HeadDim, device: cuda, dtype: dtype);
        foreach (var p in qNorm.parameters().Concat(kNorm.parameters())) p.copy_(torch.randn_like(p).mul_(0.5).add_(0.5));
        using var rope = Rope2D.Create(gridH, gridW, 5, repeats, FusedQkNormRope.HeadDim, dtype, cuda);

        // VggtAttention's eager path; stacked only to compare with the fused kernel's [2, ...] output.
        (Tensor, Tensor) Eager() => (rope.Apply(qNorm.forward(q)), rope.Apply(kNorm.forward(k)));
        Tensor? Fused() => FusedQkNormRope.TryApply(q, k, qNorm, kNorm, 1e-5, rope);
        return Compare($"vggt q/k [{batch}, {tokens}, {Heads}, 64] {Name(dtype)}", () => { var (eq, ek) = Eager(); return torch.stack([eq, ek]); }, () => Eager(), Fused, runs);
    }

    static JsonObject VisionRopeCheck(long tokens, int headDim, ScalarType dtype, int runs)
    {
        using var scope = torch.NewDisposeScope();
        var cuda = Timing.Cuda;
        var qkv = torch.randn(tokens, 3 * Heads * headDim, dtype, cuda).reshape(tokens, 3, Heads, headDim).permute(1, 0, 2, 3);
        var qk = qkv.narrow(0, 0, 2);
        var angles = torch.rand(tokens, 1, headDim, ScalarType.Float32, cuda).mul_(100);
        Tensor cos = angles.cos(), signedSin = RotaryEmbedding.SignedSin(angles.sin());

        Tensor Eager() => RotaryEmbedding.ApplyPromoted(qk, cos, signedSin).to(dtype);
        Tensor? Fused() => FusedVisionRope.TryApply(qk, cos, signedSin);
        return Compare($"vision q/k [2, {tokens}, {Heads}, {headDim}] {Name(dtype)}", Eager, () => Eager(), Fused, runs);
    }

    /// <param name="eager">The eager result, shaped as the fused one.</param>
    /// <param name="eagerAsUsed">The eager path as the model runs it (timed).</param>
    static JsonObject Compare(string name, Func<Tensor> eager, Action eagerAsUsed, Func<Tensor?> fused, int runs)
    {
        using var scope = torch.NewDisposeScope();
        var expected = eager();
        var actual = fused();
        if (actual is null)
        {
            Console.WriteLine($"  {name}: fused kernel did not apply");
            return new JsonObject { ["applied"] = false };
        }
        var difference = (actual.to(ScalarType.Float32) - expected.to(ScalarType.Float32)).abs();
        double maxAbs = difference.max().item<float>();
        long equal = actual.eq(expected).sum().item<long>(), total = expected.numel();
        double eagerMs = TimeCall(eagerAsUsed, runs), fusedMs = TimeCall(() => fused(), runs);
        Console.WriteLine($"  {name}: max abs diff {maxAbs:G4}, equal {equal}/{total}; eager {eagerMs:F3} ms, fused {fusedMs:F3} ms ({eagerMs / fusedMs:F1}×)");
        return new JsonObject
        {
            ["applied"] = true, ["max_abs_diff"] = maxAbs, ["equal"] = equal, ["total"] = total,
            ["eager_ms"] = eagerMs, ["fused_ms"] = fusedMs,
        };
    }

    /// <summary>Median over <paramref name="runs"/> of the mean time of 10 back-to-back calls, after a warm-up.</summary>
    static double TimeCall(Action call, int runs)
    {
        const int calls = 10;
        for (int i = 0; i < 3; i++) { using var s = torch.NewDisposeScope(); call(); }
        var times = new double[runs];
        for (int r = 0; r < runs; r++)
        {
            using var s = torch.NewDisposeScope();
            Timing.Sync();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < calls; i++) call();
            Timing.Sync();
            times[r] = clock.Elapsed.TotalMilliseconds / calls;
        }
        return Timing.Median(times);
    }

    /// <summary>Times a whole model forward with the fused kernels on and off and compares the outputs.</summary>
    static JsonObject FusedOnOff(string name, int runs, Func<(IDisposable Model, Func<Tensor> Forward)> build)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(0);
        var (model, forward) = build();
        using var _ = model;
        var result = new JsonObject();
        var outputs = new Dictionary<bool, Tensor>();
        foreach (bool enabled in new[] { false, true })
        {
            CompiledCudaModule.Enabled = enabled;
            try
            {
                outputs[enabled] = forward().to(ScalarType.Float32);
                var times = Enumerable.Range(0, runs + 1).Select(_ =>
                {
                    using var s = torch.NewDisposeScope();
                    Timing.Sync();
                    var clock = Stopwatch.StartNew();
                    forward();
                    Timing.Sync();
                    return clock.Elapsed.TotalMilliseconds;
                }).Skip(1).ToArray();
                double ms = Timing.Median(times);
                Console.WriteLine($"  {name} fused {(enabled ? "on " : "off")} {ms,9:F2} ms   [{string.Join(", ", times.Select(t => t.ToString("F1")))}]");
                result[enabled ? "fused_ms" : "eager_ms"] = ms;
                result[enabled ? "fused_runs_ms" : "eager_runs_ms"] = new JsonArray(times.Select(t => (JsonNode?)t).ToArray());
            }
            finally
            {
                CompiledCudaModule.Enabled = true;
            }
        }
        double maxAbs = (outputs[true] - outputs[false]).abs().max().item<float>();
        long equal = outputs[true].eq(outputs[false]).sum().item<long>();
        Console.WriteLine($"  {name} fused vs eager output: max abs diff {maxAbs:G4}, equal {equal}/{outputs[true].numel()}");
        result["max_abs_diff"] = maxAbs;
        result["equal"] = equal;
        result["total"] = outputs[true].numel();
        return result;
    }

    static string Name(ScalarType dtype) => dtype == ScalarType.BFloat16 ? "bf16" : dtype == ScalarType.Float32 ? "fp32" : dtype.ToString();
}
