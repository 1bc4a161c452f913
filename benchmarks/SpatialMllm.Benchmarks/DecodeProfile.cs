using System.Diagnostics;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Benchmarks;

/// <summary>
/// Where a decoded token's time goes (issue 26), without a profiler: the full-size decoder in bf16 after a 3190-token
/// prompt, and parts of its step captured alone as CUDA graphs and replayed back to back —
/// <list type="bullet">
/// <item>the whole step (greedy generation, per token as the main benchmark measures it), with the decode kernels and
/// with the TorchScript step they replace;</item>
/// <item>the weights alone: the step's GEMVs at batch 1 on the model's own weights (36 × q/k/v fused, o, gate, up, down,
/// and the head) — what streaming 6.2 GB costs with cuBLAS as called now, against the card's bandwidth;</item>
/// <item>the same with gate and up as one weight (one GEMV instead of two);</item>
/// <item>the attention alone (36 × SDPA of one query over the cache under the mask, as the script calls it) at the
/// filled length and at a capacity of 4× that.</item>
/// </list>
/// The step minus its GEMVs bounds what the norms, RoPE, cache writes, attention and element-wise ops cost.
/// </summary>
internal static class DecodeProfile
{
    const int Replays = 50, TextTokens = 62, Frames = 16, Height = 476, Width = 644;

    static readonly Lazy<jit.CompilationUnit> Attention = new(() => jit.compile("""
def attention(q: Tensor, keys: List[Tensor], values: List[Tensor], mask: Tensor) -> Tensor:
    out = q
    for i in range(len(keys)):
        out = torch.scaled_dot_product_attention(q, keys[i], values[i], attn_mask=mask, enable_gqa=True)
    return out

"""));

    public static JsonObject Run(SpatialMllmConfig qwenConfig, int decodeTokens, GpuMemoryMonitor memory)
    {
        var cuda = Timing.Cuda;
        var bf16 = ScalarType.BFloat16;
        var config = qwenConfig with { Spatial = SpatialEncoderConfig.Vggt1B, Connector = new ConnectorConfig("mlp_add", -1) };
        var text = config.Text;
        torch.manual_seed(0);
        using var model = SpatialMllmModel.Create(config, cuda, bf16);
        using var noGrad = torch.no_grad();
        var result = new JsonObject { ["gpu"] = MainStages.GpuName(), ["replays"] = Replays };

        // The whole step: a prompt of the main benchmark's length (random embeddings: the decoder's work does not depend
        // on them), greedy, no eos; per token = (T(prefill + 1 + n) − T(prefill + 1)) / n.
        int promptLength = new GridThw(Frames / 2, Height / 14, Width / 14).MergedTokenCount(2) + TextTokens;
        using var ids = torch.randint(0, 1000, [1, promptLength], ScalarType.Int64, cuda);
        using var embeds = torch.randn([1, promptLength, text.HiddenSize], bf16, cuda);
        using var positions = torch.arange(promptLength, ScalarType.Int64, cuda).view(1, 1, -1).expand(3, 1, -1).contiguous();
        using var deltas = torch.zeros([1], ScalarType.Int64, cuda);
        var greedy = new GenerationOptions([-1], MaxNewTokens: 1);
        void Gen(int n) { using var r = Generation.Generate(model.Language, ids, embeds, positions, deltas, greedy with { MaxNewTokens = n }); }
        double WholeStep(string label)
        {
            var (t1, _, _) = Timing.Measure($"prefill + 1 token ({label})", 3, () => Gen(1), memory);
            var (tn, _, _) = Timing.Measure($"prefill + {decodeTokens + 1} tokens ({label})", 3, () => Gen(decodeTokens + 1), memory);
            double ms = (tn - t1) / decodeTokens;
            Console.WriteLine($"  whole decode step, {label,-30} {ms,9:F3} ms");
            return ms;
        }
        // The captured step with the decode kernels (Qwen2DecodeKernels), then the TorchScript step it replaces.
        double step = WholeStep("decode kernels");
        CompiledCudaModule.Enabled = false;
        double scripted = WholeStep("TorchScript step");
        CompiledCudaModule.Enabled = true;
        result["prompt_tokens"] = promptLength;
        result["step_ms"] = step;
        result["step_torchscript_ms"] = scripted;

        // The GEMVs alone, on the model's weights.
        var layers = model.Language.model.layers;
        using var x = torch.randn([1, 1, text.HiddenSize], bf16, cuda);
        using var hidden = torch.randn([1, 1, text.IntermediateSize], bf16, cuda);
        var head = model.Language.lm_head.weight!;
        var weights = layers.Select(l => (Qkv: l.self_attn.Fused.QkvWeights(), O: l.self_attn.o_proj.weight!, Mlp: l.mlp.Weights)).ToList();
        double bytes = weights.Sum(w => Bytes(w.Qkv.Weight) + Bytes(w.Qkv.Bias) + Bytes(w.O) + Bytes(w.Mlp.Gate) + Bytes(w.Mlp.Up) + Bytes(w.Mlp.Down))
            + Bytes(head);
        double gemvs = Replay("GEMVs alone (q/k/v, o, gate, up, down, head)", () =>
        {
            foreach (var w in weights)
            {
                nn.functional.linear(x, w.Qkv.Weight, w.Qkv.Bias).Dispose();
                nn.functional.linear(x, w.O).Dispose();
                nn.functional.linear(x, w.Mlp.Gate).Dispose();
                nn.functional.linear(x, w.Mlp.Up).Dispose();
                nn.functional.linear(hidden, w.Mlp.Down).Dispose();
            }
            return nn.functional.linear(x, head);
        }, result);
        result["weight_gb"] = bytes / 1e9;
        result["gemv_bandwidth_tb_s"] = bytes / (gemvs * 1e-3) / 1e12;
        Console.WriteLine($"  {bytes / 1e9:F2} GB streamed: {bytes / (gemvs * 1e-3) / 1e12:F2} TB/s");

        // The decode kernels' GEMVs (Qwen2DecodeKernels) on the same weights, with what they fuse (norms, bias, residuals,
        // SwiGLU): the whole set, then each shape 36 times beside cuBLAS's linear of it.
        using var x2 = x.view(1, -1);
        using var hidden2 = hidden.view(1, -1);
        var normWeight = layers[0].input_layernorm.Weight;
        double eps = text.RmsNormEps;
        double ours = Replay("decode kernels' GEMVs alone (+ norms, SwiGLU, residuals)", () =>
        {
            foreach (var w in weights)
            {
                Qwen2DecodeKernels.Linear(x2, w.Qkv.Weight, bias: w.Qkv.Bias, normWeight: normWeight, eps: eps).Dispose();
                Qwen2DecodeKernels.Linear(x2, w.O, residual: x2).Dispose();
                Qwen2DecodeKernels.SwiGlu(x2, w.Mlp.Gate, w.Mlp.Up, normWeight, eps).Dispose();
                Qwen2DecodeKernels.Linear(hidden2, w.Mlp.Down, residual: x2).Dispose();
            }
            return Qwen2DecodeKernels.Linear(x2, head, normWeight: model.Language.model.norm.Weight, eps: eps);
        }, result);
        Console.WriteLine($"  {bytes / (ours * 1e-3) / 1e12:F2} TB/s");
        result["kernel_gemv_bandwidth_tb_s"] = bytes / (ours * 1e-3) / 1e12;
        // Each layer's own weight, so that none is read from L2.
        void PerShape(string name, Action<int> cublas, Action<int> kernel)
        {
            Replay($"36 × {name}: cuBLAS", () => { for (int i = 0; i < weights.Count; i++) cublas(i); return torch.zeros(1, device: cuda); }, result);
            Replay($"36 × {name}: decode kernel", () => { for (int i = 0; i < weights.Count; i++) kernel(i); return torch.zeros(1, device: cuda); }, result);
        }
        PerShape("qkv", i => nn.functional.linear(x, weights[i].Qkv.Weight, weights[i].Qkv.Bias).Dispose(),
            i => Qwen2DecodeKernels.Linear(x2, weights[i].Qkv.Weight, bias: weights[i].Qkv.Bias, normWeight: normWeight, eps: eps).Dispose());
        PerShape("o_proj", i => nn.functional.linear(x, weights[i].O).Dispose(),
            i => Qwen2DecodeKernels.Linear(x2, weights[i].O, residual: x2).Dispose());
        PerShape("gate + up", i => { nn.functional.linear(x, weights[i].Mlp.Gate).Dispose(); nn.functional.linear(x, weights[i].Mlp.Up).Dispose(); },
            i => Qwen2DecodeKernels.SwiGlu(x2, weights[i].Mlp.Gate, weights[i].Mlp.Up, normWeight, eps).Dispose());
        PerShape("down_proj", i => nn.functional.linear(hidden, weights[i].Mlp.Down).Dispose(),
            i => Qwen2DecodeKernels.Linear(hidden2, weights[i].Mlp.Down, residual: x2).Dispose());

        // Gate and up as one weight: one GEMV of twice the rows.
        var gateUp = weights.Select(w => torch.cat([w.Mlp.Gate, w.Mlp.Up], 0)).ToList();
        Replay("GEMVs, gate and up as one weight", () =>
        {
            for (int i = 0; i < weights.Count; i++)
            {
                var w = weights[i];
                nn.functional.linear(x, w.Qkv.Weight, w.Qkv.Bias).Dispose();
                nn.functional.linear(x, w.O).Dispose();
                nn.functional.linear(x, gateUp[i]).Dispose();
                nn.functional.linear(hidden, w.Mlp.Down).Dispose();
            }
            return nn.functional.linear(x, head);
        }, result);
        foreach (var t in gateUp) t.Dispose();

        // The attention alone, at the filled length and at 4× that (a cache reserved for longer answers).
        using var q = torch.randn([1, text.NumAttentionHeads, 1, text.HeadDim], bf16, cuda);
        foreach (long capacity in new long[] { promptLength + decodeTokens, 4L * promptLength })
        {
            var keys = Enumerable.Range(0, layers.Count).Select(_ => torch.randn([1, text.NumKeyValueHeads, capacity, text.HeadDim], bf16, cuda)).ToArray();
            var values = Enumerable.Range(0, layers.Count).Select(_ => torch.randn([1, text.NumKeyValueHeads, capacity, text.HeadDim], bf16, cuda)).ToArray();
            using var mask = torch.arange(capacity, device: cuda).lt(promptLength).view(1, 1, 1, -1);
            Replay($"attention alone, capacity {capacity}", () => (Tensor)Attention.Value.invoke("attention", q, keys, values, mask), result);
            foreach (var t in keys.Concat(values)) t.Dispose();
        }
        result["step_minus_gemvs_ms"] = step - gemvs;
        Console.WriteLine($"  step − GEMVs (norms, RoPE, cache writes, attention, element-wise) {step - gemvs,9:F3} ms");
        return result;
    }

    static double Bytes(Tensor t) => t.NumberOfElements * t.ElementSize;

    /// <summary>GPU time of one replay of <paramref name="body"/> captured as a CUDA graph (replays back to back, one sync).</summary>
    static double Replay(string name, Func<Tensor> body, JsonObject result)
    {
        var (graph, output) = CudaGraph.Capture(Timing.Cuda, body);
        using (graph)
        using (output)
        {
            for (int i = 0; i < 3; i++) graph.Replay();
            Timing.Sync();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < Replays; i++) graph.Replay();
            Timing.Sync();
            double ms = clock.Elapsed.TotalMilliseconds / Replays;
            Console.WriteLine($"  {name,-44} {ms,9:F3} ms");
            result[name] = ms;
            return ms;
        }
    }
}
