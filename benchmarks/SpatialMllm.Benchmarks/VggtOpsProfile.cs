using System.Diagnostics;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Models.Vggt;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Benchmarks;

/// <summary>
/// Where the VGGT aggregator's time goes, without a profiler: each kind of block on its real shape (bf16, 16 frames at
/// 476×644), and inside a global block each op alone, as GPU time per call (calls back to back, synchronised once).
/// </summary>
internal static class VggtOpsProfile
{
    const int Calls = 20;

    // Profiler range for `ncu --profile-from-start off` (VGGT_OPS_NCU=1): one block of each kind, after warm-up.
    [System.Runtime.InteropServices.DllImport("libcuda.so.1")] static extern int cuProfilerStart();
    [System.Runtime.InteropServices.DllImport("libcuda.so.1")] static extern int cuProfilerStop();

    public static JsonObject Run()
    {
        var cuda = Timing.Cuda;
        var bf16 = ScalarType.BFloat16;
        using var noGrad = torch.no_grad();
        torch.manual_seed(0);
        const long frames = 16, gridH = 34, gridW = 46, perFrame = 5 + gridH * gridW, dim = 1024;
        var result = new JsonObject();
        double Time(string name, Action op)
        {
            for (int i = 0; i < 3; i++) op();
            Timing.Sync();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < Calls; i++) op();
            Timing.Sync();
            double ms = clock.Elapsed.TotalMilliseconds / Calls;
            Console.WriteLine($"  {name,-44} {ms,9:F3} ms");
            result[name] = ms;
            return ms;
        }
        void Run1(Func<Tensor> op) { using var scope = torch.NewDisposeScope(); op(); }

        using var block = new VggtBlock((int)dim, 16, 4.0, 1e-5, qkNorm: true, cuda, bf16);
        using var dino = new VggtBlock((int)dim, 16, 4.0, 1e-6, qkNorm: false, cuda, bf16);
        using var globalRope = Rope2D.Create(gridH, gridW, 5, (int)frames, 64, bf16, cuda);
        using var frameRope = Rope2D.Create(gridH, gridW, 5, 1, 64, bf16, cuda);
        using var global = torch.randn(1, frames * perFrame, dim, bf16, cuda);
        using var framed = global.view(frames, perFrame, dim);
        if (Environment.GetEnvironmentVariable("VGGT_OPS_NCU") == "1")
        {
            for (int i = 0; i < 3; i++) { Run1(() => block.forward(global, globalRope)); Run1(() => block.forward(framed, frameRope)); Run1(() => dino.forward(framed)); }
            Timing.Sync();
            cuProfilerStart();
            Run1(() => block.forward(global, globalRope));
            Run1(() => block.forward(framed, frameRope));
            Run1(() => dino.forward(framed));
            Timing.Sync();
            cuProfilerStop();
            return result;
        }
        Time("global block", () => Run1(() => block.forward(global, globalRope)));
        Time("frame block", () => Run1(() => block.forward(framed, frameRope)));
        Time("dino block", () => Run1(() => dino.forward(framed)));

        var x = global.view(frames * perFrame, dim);
        using var w = torch.randn(dim, dtype: bf16, device: cuda);
        using var bias = torch.randn(dim, dtype: bf16, device: cuda);
        using var wqkv = torch.randn(3 * dim, dim, dtype: bf16, device: cuda) * 0.02;
        using var bqkv = torch.randn(3 * dim, dtype: bf16, device: cuda);
        using var wproj = torch.randn(dim, dim, dtype: bf16, device: cuda) * 0.02;
        using var wfc1 = torch.randn(4 * dim, dim, dtype: bf16, device: cuda) * 0.02;
        using var bfc1 = torch.randn(4 * dim, dtype: bf16, device: cuda);
        using var wfc2 = torch.randn(dim, 4 * dim, dtype: bf16, device: cuda) * 0.02;
        using var hidden = torch.randn(frames * perFrame, 4 * dim, bf16, cuda);
        using var q = torch.randn(1, 16, frames * perFrame, 64, bf16, cuda);
        Time("layer_norm 1024", () => Run1(() => nn.functional.layer_norm(x, [dim], w, bias, 1e-5)));
        Time("linear qkv 1024→3072 (+bias)", () => Run1(() => nn.functional.linear(x, wqkv, bqkv)));
        Time("linear proj 1024→1024 (+bias)", () => Run1(() => nn.functional.linear(x, wproj, bias)));
        Time("linear fc1 1024→4096 (+bias)", () => Run1(() => nn.functional.linear(x, wfc1, bfc1)));
        Time("gelu [N, 4096]", () => Run1(() => nn.functional.gelu(hidden)));
        Time("linear fc2 4096→1024 (+bias)", () => Run1(() => nn.functional.linear(hidden, wfc2, bias)));
        Time("addcmul x + γ·branch", () => Run1(() => torch.addcmul(x, x, w, 1)));
        Time("sdpa global [1,16,N,64]", () => Run1(() => nn.functional.scaled_dot_product_attention(q, q, q)));
        return result;
    }
}
