using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Benchmarks;

/// <summary>
/// GPU benchmark of the full-size Spatial-MLLM (random weights, bf16) against the Python reference. Parts run as
/// separate processes so that each part's device-memory peak is its own (the caching allocator never returns memory):
/// <code>
///   main     --config qwen-config.json --out DIR [--runs 5]     stages, decode, whole sample, evaluate throughput
///   sampling --out DIR [--runs 3] [--frames 128]                space-aware sampling (VGGT + point head)
///   fixture  --fixture DIR --out DIR                            bf16 vs fp32 vs fixture on the tiny checkpoint
///   train-step --config qwen-config.json --out DIR [--runs 5] [--gradient-checkpointing] [--lora]   one SFT step (issue 15; LoRA: issue 23)
///   grpo-step --config qwen-config.json --out DIR [--runs 3] [--completions 8] [--completion-tokens 64]   one GRPO step (issue 24)
///   decode-profile --config qwen-config.json --out DIR [--decode-tokens 32]   where a decoded token's time goes (issue 26)
///   report   --out DIR [--reference ref.json] [--machine NAME] [--results DIR] [--command CMD]
/// </code>
/// </summary>
internal static class Program
{
    static int Main(string[] args)
    {
        if (args.Length == 0) { Console.Error.WriteLine("usage: SpatialMllm.Benchmarks main|sampling|fixture|train-step|grpo-step|decode-profile|kernels|vggt-ops|report [options]"); return 2; }
        var options = ParseOptions(args.Skip(1));
        string Opt(string name, string? fallback = null) => options.TryGetValue(name, out var v) ? v
            : fallback ?? throw new ArgumentException($"--{name} is required");
        string outDir = Opt("out", ".");
        Directory.CreateDirectory(outDir);
        switch (args[0])
        {
            case "report":
                Report.Write(outDir, Opt("reference", ""), Opt("machine", Environment.MachineName), Opt("results", ""), Opt("command", ""));
                return 0;
        }
        TorchRuntime.EnsureLoaded();
        if (!torch.cuda.is_available()) { Console.Error.WriteLine("CUDA is not available: this benchmark needs a GPU."); return 1; }
        using var memory = new GpuMemoryMonitor();
        JsonObject result = args[0] switch
        {
            "main" => MainStages.Run(ConfigFile.Load(Opt("config")), int.Parse(Opt("runs", "5")), int.Parse(Opt("decode-tokens", "64")),
                int.Parse(Opt("questions", "8")), memory),
            "sampling" => SamplingStage.Run(int.Parse(Opt("runs", "3")), int.Parse(Opt("frames", "128")), memory),
            "vggt-ops" => VggtOpsProfile.Run(),
            "fixture" => FixtureCheck.Run(Opt("fixture")),
            "train-step" => TrainStep.Run(ConfigFile.Load(Opt("config")), int.Parse(Opt("runs", "5")), options.ContainsKey("gradient-checkpointing"),
                options.ContainsKey("lora"), memory),
            "kernels" => KernelCheck.Run(int.Parse(Opt("runs", "10"))),
            "grpo-step" => GrpoStep.Run(ConfigFile.Load(Opt("config")), int.Parse(Opt("runs", "3")), int.Parse(Opt("completions", "8")),
                int.Parse(Opt("completion-tokens", "64")), memory),
            "decode-profile" => DecodeProfile.Run(ConfigFile.Load(Opt("config")), int.Parse(Opt("decode-tokens", "32")), memory),
            _ => throw new ArgumentException($"unknown part '{args[0]}'"),
        };
        result["gpu_memory_source"] = memory.Available ? "NVML used (process context + caching allocator)" : "unavailable";
        string path = Path.Combine(outDir, args[0] + ".json");
        File.WriteAllText(path, result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }

    static Dictionary<string, string> ParseOptions(IEnumerable<string> args)
    {
        var result = new Dictionary<string, string>();
        string? key = null;
        foreach (var a in args)
        {
            if (a.StartsWith("--", StringComparison.Ordinal)) { key = a[2..]; result[key] = "true"; }
            else if (key != null) { result[key] = a; key = null; }
        }
        return result;
    }
}

/// <summary>Timing helpers: warm-up, synchronise around each run, median.</summary>
internal static class Timing
{
    public static readonly Device Cuda = torch.CUDA;

    public static void Sync() => torch.cuda.synchronize(Cuda);

    /// <summary>Runs <paramref name="body"/> once to warm up, then <paramref name="runs"/> times; median ms and the peak
    /// device memory over the timed runs (GiB).</summary>
    public static (double Ms, double PeakGiB, double[] All) Measure(string name, int runs, Action body, GpuMemoryMonitor memory, int warmup = 1)
    {
        for (int i = 0; i < warmup; i++) { using var s = torch.NewDisposeScope(); body(); Sync(); }
        memory.ResetPeak();
        var times = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            using var s = torch.NewDisposeScope();
            Sync();
            var clock = Stopwatch.StartNew();
            body();
            Sync();
            times[i] = clock.Elapsed.TotalMilliseconds;
        }
        double peak = memory.PeakGiB;
        double median = Median(times);
        Console.WriteLine($"  {name,-34} {median,10:F2} ms   [{string.Join(", ", times.Select(t => t.ToString("F1")))}]   peak {peak:F2} GiB");
        return (median, peak, times);
    }

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    public static JsonObject Stage(double ms, double peak, double[] all, string? note = null)
    {
        var o = new JsonObject { ["ms"] = ms, ["peak_gib"] = double.IsNaN(peak) ? null : peak, ["runs_ms"] = new JsonArray(all.Select(a => (JsonNode?)a).ToArray()) };
        if (note != null) o["note"] = note;
        return o;
    }
}

/// <summary>The full-size model on one sample of 16 frames at 476×644 (grid 8×34×46; 3128 video tokens; 3190 tokens).</summary>
internal static class MainStages
{
    const int Frames = 16, Height = 476, Width = 644, TextTokens = 62;

    public static JsonObject Run(SpatialMllmConfig qwenConfig, int runs, int decodeTokens, int questions, GpuMemoryMonitor memory)
    {
        var cuda = Timing.Cuda;
        var config = qwenConfig with { Spatial = SpatialEncoderConfig.Vggt1B, Connector = new ConnectorConfig("mlp_add", -1) };
        torch.manual_seed(0);
        var build = Stopwatch.StartNew();
        using var model = SpatialMllmModel.Create(config, cuda, ScalarType.BFloat16);
        Timing.Sync();
        Console.WriteLine($"model built on cuda in {build.Elapsed.TotalSeconds:F1} s; device memory {memory.CurrentGiB:F2} GiB");
        double weightsGiB = memory.CurrentGiB;

        var grid = new GridThw(Frames / 2, Height / 14, Width / 14);
        int videoTokens = grid.MergedTokenCount(2);
        using var pixels = torch.randn(grid.PatchCount, 3 * 2 * 14 * 14, ScalarType.BFloat16, cuda);
        using var frames = torch.rand(Frames, 3, Height, Width, ScalarType.BFloat16, cuda);
        using var gridTensor = grid.ToTensor().to(cuda);
        var ids = PromptIds(config.Tokens, videoTokens, TextTokens, config.Text.VocabSize);
        var result = new JsonObject
        {
            ["gpu"] = GpuName(), ["frames"] = Frames, ["height"] = Height, ["width"] = Width,
            ["grid"] = $"({grid.T},{grid.H},{grid.W})", ["patches"] = grid.PatchCount, ["video_tokens"] = videoTokens, ["tokens"] = ids.Length,
            ["weights_gib"] = weightsGiB, ["runs"] = runs,
        };
        var stages = new JsonObject();
        result["stages"] = stages;
        using var noGrad = torch.no_grad();

        var (ms, peak, all) = Timing.Measure("vision tower", runs, () => model.visual.forward(pixels, gridTensor), memory);
        stages["vision_tower"] = Timing.Stage(ms, peak, all);

        (ms, peak, all) = Timing.Measure("VGGT aggregator (layer -1)", runs, () => model.Vggt!.aggregator.ForwardLayer(frames, -1), memory);
        stages["vggt_aggregator"] = Timing.Stage(ms, peak, all);

        using var vision = model.visual.forward(pixels, gridTensor).DetachFromDisposeScope();
        using var spatial = model.Vggt!.aggregator.ForwardLayer(frames, -1).DetachFromDisposeScope();
        (ms, peak, all) = Timing.Measure("connector", runs, () => model.connector!.forward(vision, spatial, 5, grid), memory);
        stages["connector"] = Timing.Stage(ms, peak, all);

        using var fused = model.connector!.forward(vision, spatial, 5, grid).DetachFromDisposeScope();
        using var inputIds = torch.tensor(ids.Select(i => (long)i).ToArray(), device: cuda).unsqueeze(0);
        using var embeds = model.Language.EmbedWithVisualTokens(inputIds, fused, config.Tokens.VideoTokenId).DetachFromDisposeScope();
        var (positionsRaw, deltasRaw) = RopeIndex.Compute(inputIds, config.Tokens, config.Vision, gridTensor, torch.tensor(new[] { 1.0 }, device: cuda));
        using var positions = positionsRaw.DetachFromDisposeScope();
        using var deltas = deltasRaw.DetachFromDisposeScope();

        (ms, peak, all) = Timing.Measure($"decoder prefill ({ids.Length} tokens)", runs, () =>
        {
            using var cache = new Qwen2KvCache(config.Text.NumHiddenLayers, ids.Length + decodeTokens + 1);
            model.Language.forward(embeds, positions, cache, lastPositionOnly: true);
        }, memory);
        stages["decoder_prefill"] = Timing.Stage(ms, peak, all);

        // Decode: greedy, no eos (an id the vocabulary lacks), no repetition penalty. Per token = (T(1+n) − T(1)) / n.
        var greedy = new GenerationOptions([-1], MaxNewTokens: 1);
        void Gen(int n) { using var r = Generation.Generate(model.Language, inputIds, embeds, positions, deltas, greedy with { MaxNewTokens = n }); }
        var (t1, _, all1) = Timing.Measure("prefill + 1 token", runs, () => Gen(1), memory);
        var (tn, peakN, alln) = Timing.Measure($"prefill + {decodeTokens + 1} tokens", runs, () => Gen(decodeTokens + 1), memory);
        double perToken = (tn - t1) / decodeTokens;
        Console.WriteLine($"  decode ms/token (greedy)            {perToken,10:F2} ms");
        stages["decode_per_token"] = Timing.Stage(perToken, peakN, alln.Zip(all1, (a, b) => (a - b) / decodeTokens).ToArray(),
            $"(T(prefill+{decodeTokens + 1}) - T(prefill+1)) / {decodeTokens}, greedy, no eos");

        // The same with one uncaptured TorchScript call a step (no CUDA graph), and whether the graph, the script and the
        // eager steps pick the same tokens.
        long[] Ids(int n) { using var r = Generation.Generate(model.Language, inputIds, embeds, positions, deltas, greedy with { MaxNewTokens = n }); return r.Sequences.data<long>().ToArray(); }
        var graphIds = Ids(decodeTokens + 1);
        model.Language.DecodeMode = DecodeStepMode.Eager;
        var eagerIds = Ids(decodeTokens + 1);
        model.Language.DecodeMode = DecodeStepMode.Scripted;
        var scriptedIds = Ids(decodeTokens + 1);
        var (st1, _, sall1) = Timing.Measure("prefill + 1 token (scripted decode)", runs, () => Gen(1), memory);
        var (stn, speakN, salln) = Timing.Measure($"prefill + {decodeTokens + 1} tokens (scripted decode)", runs, () => Gen(decodeTokens + 1), memory);
        model.Language.DecodeMode = null;
        double scriptedPerToken = (stn - st1) / decodeTokens;
        int Same(long[] a, long[] b) => a.Zip(b).TakeWhile(p => p.First == p.Second).Count();
        Console.WriteLine($"  decode ms/token (greedy, scripted)  {scriptedPerToken,10:F2} ms; graph = eager for {Same(graphIds, eagerIds)}, " +
            $"scripted = eager for {Same(scriptedIds, eagerIds)} of {eagerIds.Length} tokens");
        stages["decode_per_token_scripted"] = Timing.Stage(scriptedPerToken, speakN, salln.Zip(sall1, (a, b) => (a - b) / decodeTokens).ToArray(),
            "as decode_per_token with one TorchScript call a step instead of the CUDA graph");
        result["decode_graph_equals_eager_tokens"] = Same(graphIds, eagerIds);
        result["decode_scripted_equals_eager_tokens"] = Same(scriptedIds, eagerIds);
        result["decode_tokens_compared"] = eagerIds.Length;

        // What a generation pays once for its graph: the capture (two warm-up steps, the captured one, instantiation),
        // against a replayed step.
        // Then replays back to back, without the generation loop's token choice and host sync between them: the GPU time
        // of a step.
        const int Replays = 64;
        using (var cache = new Qwen2KvCache(config.Text.NumHiddenLayers, ids.Length + Replays + 2))
        {
            using var first = model.Language.forward(embeds, positions, cache, lastPositionOnly: true);
            using var next = first.select(1, 0).argmax(-1);
            torch.cuda.synchronize();
            var clock = Stopwatch.StartNew();
            using var captured = model.Language.DecodeStep(next, deltas, cache);
            torch.cuda.synchronize();
            result["decode_graph_capture_ms"] = clock.Elapsed.TotalMilliseconds;
            Console.WriteLine($"  decode graph capture + first step   {clock.Elapsed.TotalMilliseconds,10:F2} ms");
            clock.Restart();
            for (int i = 0; i < Replays; i++) model.Language.DecodeStep(next, deltas, cache).Dispose();
            torch.cuda.synchronize();
            double replay = clock.Elapsed.TotalMilliseconds / Replays;
            result["decode_graph_replay_ms"] = replay;
            Console.WriteLine($"  decode step, replays back to back   {replay,10:F2} ms");
        }

        // The evaluation decoding (top-k 1 / top-p 0.001 / repetition penalty 1.05 after temperature 0.1).
        var eval = GenerationOptions.SpatialMllmEvaluation([-1], 1);
        void GenEval(int n) { using var r = Generation.Generate(model.Language, inputIds, embeds, positions, deltas, eval with { MaxNewTokens = n }); }
        var (e1, _, _) = Timing.Measure("prefill + 1 token (eval sampling)", 3, () => GenEval(1), memory);
        var (en, _, _) = Timing.Measure($"prefill + {decodeTokens + 1} tokens (eval sampling)", 3, () => GenEval(decodeTokens + 1), memory);
        stages["decode_per_token_eval_sampling"] = new JsonObject { ["ms"] = (en - e1) / decodeTokens, ["note"] = "SpatialMllmEvaluation options (top-p sort + repetition penalty per step)" };

        // Whole sample: encode (vision + VGGT + connector) + prefill + 32 tokens.
        const int WholeTokens = 32;
        var noTimings = new List<StageTiming>();
        (ms, peak, all) = Timing.Measure($"whole sample (encode+prefill+{WholeTokens})", runs, () =>
        {
            using var f = model.EncodeProcessed(pixels, grid, frames, new AnswerOptions(), noTimings);
            using var e = model.Language.EmbedWithVisualTokens(inputIds, f, config.Tokens.VideoTokenId);
            using var r = Generation.Generate(model.Language, inputIds, e, positions, deltas, greedy with { MaxNewTokens = WholeTokens });
            noTimings.Clear();
        }, memory);
        stages["whole_sample"] = Timing.Stage(ms, peak, all);

        // evaluate with the feature cache: one video, `questions` questions of 32 tokens with the evaluation decoding.
        var answer = new AnswerOptions(Generation: eval with { MaxNewTokens = WholeTokens });
        (ms, peak, all) = Timing.Measure($"evaluate cached: 1 encode + {questions} answers", 1, () =>
        {
            var list = new List<StageTiming>();
            using var vf = new VideoFeatures(model.EncodeProcessed(pixels, grid, frames, answer, list), grid, 1.0, list, FusionMode.Full);
            for (int q = 0; q < questions; q++) { using var r = model.Generate(ids, vf, answer); }
        }, memory);
        var cached = Timing.Stage(ms, peak, all);
        (ms, peak, all) = Timing.Measure($"evaluate uncached: {questions} x (encode + answer)", 1, () =>
        {
            for (int q = 0; q < questions; q++)
            {
                var list = new List<StageTiming>();
                using var vf = new VideoFeatures(model.EncodeProcessed(pixels, grid, frames, answer, list), grid, 1.0, list, FusionMode.Full);
                using var r = model.Generate(ids, vf, answer);
            }
        }, memory, warmup: 0);
        var uncached = Timing.Stage(ms, peak, all);
        result["evaluate"] = new JsonObject
        {
            ["questions"] = questions, ["answer_tokens"] = WholeTokens, ["cached"] = cached, ["uncached"] = uncached,
            ["questions_per_s_cached"] = questions / (cached["ms"]!.GetValue<double>() / 1000),
            ["questions_per_s_uncached"] = questions / (uncached["ms"]!.GetValue<double>() / 1000),
        };

        // Sub-parts that bound the missed targets, timed with the same kernels the stages launch.
        var parts = new JsonObject();
        result["parts"] = parts;
        long perFrame = 5 + grid.H * grid.W;
        using (var q = torch.randn(1, 16, Frames * perFrame, 64, ScalarType.BFloat16, cuda))
        using (var qf = torch.randn(Frames, 16, perFrame, 64, ScalarType.BFloat16, cuda))
        using (var lnw = torch.ones(64, ScalarType.BFloat16, cuda))
        using (var lnb = torch.zeros(64, ScalarType.BFloat16, cuda))
        {
            (ms, _, _) = Timing.Measure("  VGGT: 24 global SDPA [1,16,25104,64]", 3, () => { for (int i = 0; i < 24; i++) nn.functional.scaled_dot_product_attention(q, q, q).Dispose(); }, memory);
            parts["vggt_24_global_sdpa_ms"] = ms;
            (ms, _, _) = Timing.Measure("  VGGT: 48 frame SDPA [16,16,1569,64]", 3, () => { for (int i = 0; i < 48; i++) nn.functional.scaled_dot_product_attention(qf, qf, qf).Dispose(); }, memory);
            parts["vggt_48_frame_and_dino_sdpa_ms"] = ms;
            (ms, _, _) = Timing.Measure("  VGGT: 96 q/k LayerNorm over 64", 3, () => { for (int i = 0; i < 96; i++) nn.functional.layer_norm(q, [64], lnw, lnb, 1e-5).Dispose(); }, memory);
            parts["vggt_96_qk_layernorm_ms"] = ms;
        }
        // Host cost of one tiny op (launch + TorchSharp's managed tensor + dispose): decode launches ~2000 of them a token.
        using (var tiny = torch.ones(1, 8, ScalarType.BFloat16, cuda))
        {
            (ms, _, _) = Timing.Measure("  2000 tiny ops (x * x, disposed)", 5, () =>
            {
                for (int i = 0; i < 2000; i++) { using var y = tiny * tiny; }
            }, memory);
            parts["tiny_op_us"] = ms / 2000 * 1000;
        }
        return result;
    }

    /// <summary>Text tokens around &lt;|vision_start|&gt; video_pad×n &lt;|vision_end|&gt;, 3190 in all for 3128 video tokens.</summary>
    internal static int[] PromptIds(SpecialTokenIds tokens, int videoTokens, int textTokens, int vocab)
    {
        var rng = new Random(0);
        int before = 15, after = textTokens - before - 2;
        var ids = new List<int>();
        for (int i = 0; i < before; i++) ids.Add(rng.Next(100, 150000));
        ids.Add(tokens.VisionStartTokenId);
        ids.AddRange(Enumerable.Repeat(tokens.VideoTokenId, videoTokens));
        ids.Add(tokens.VisionEndTokenId);
        for (int i = 0; i < after; i++) ids.Add(rng.Next(100, 150000));
        return ids.ToArray();
    }

    public static string GpuName()
    {
        try
        {
            var p = Process.Start(new ProcessStartInfo("nvidia-smi", "--query-gpu=name,driver_version --format=csv,noheader") { RedirectStandardOutput = true });
            string s = p!.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return s;
        }
        catch { return "unknown"; }
    }
}

/// <summary>Space-aware sampling of 128 candidate frames at 518 width: VGGT (bf16 aggregator, fp32 point head, as
/// VggtLoader sets it up on cuda) → point maps → greedy voxel coverage.</summary>
internal static class SamplingStage
{
    public static JsonObject Run(int runs, int frameCount, GpuMemoryMonitor memory)
    {
        var cuda = Timing.Cuda;
        torch.manual_seed(0);
        using var model = new VggtModel(SpatialEncoderConfig.Vggt1B, cuda, ScalarType.Float32);
        model.eval();
        model.aggregator.to(ScalarType.BFloat16);
        int width = VggtSamplingPreprocessor.TargetSize, height = VggtSamplingPreprocessor.ResizedHeight(640, 480);
        using var frames = torch.rand(frameCount, 3, height, width, ScalarType.Float32, cuda);
        using var noGrad = torch.no_grad();
        double predictMs = 0, selectMs = 0;
        string? selectError = null;
        IReadOnlyList<int>? onDevice = null;
        var (ms, peak, all) = Timing.Measure($"space-aware sampling ({frameCount} frames {height}x{width})", runs, () =>
        {
            var clock = Stopwatch.StartNew();
            var (points, conf) = model.Predict(frames.to(ScalarType.BFloat16));
            using var devicePoints = points.to(ScalarType.Float32);
            using var deviceConf = conf.to(ScalarType.Float32);
            torch.cuda.synchronize();
            predictMs = clock.Elapsed.TotalMilliseconds;
            clock.Restart();
            try { onDevice = SpaceAwareSelector.Select(devicePoints, deviceConf, 16).Selected; }
            catch (InvalidOperationException e) { selectError = e.Message; }
            selectMs = clock.Elapsed.TotalMilliseconds;
        }, memory);
        // The selection on the GPU must equal the one on the CPU (the reference computes it with numpy).
        bool? sameOnCpu = null;
        if (onDevice != null)
        {
            var (points, conf) = model.Predict(frames.to(ScalarType.BFloat16));
            using var hostPoints = points.to(ScalarType.Float32, torch.CPU);
            using var hostConf = conf.to(ScalarType.Float32, torch.CPU);
            sameOnCpu = SpaceAwareSelector.Select(hostPoints, hostConf, 16).Selected.SequenceEqual(onDevice);
        }
        var (aggMs, aggPeak, aggAll) = Timing.Measure("  aggregator only (layers 4..23 kept)", runs, () =>
        {
            using var layers = model.aggregator.forward(frames.to(ScalarType.BFloat16).unsqueeze(0), [4, 11, 17, 23]);
        }, memory);
        return new JsonObject
        {
            ["gpu"] = MainStages.GpuName(), ["frames"] = frameCount, ["height"] = height, ["width"] = width,
            ["sampling"] = Timing.Stage(ms, peak, all, "VggtModel.Predict (bf16 aggregator, fp32 point head) + SpaceAwareSelector.Select(k=16) on the GPU"),
            ["last_predict_ms"] = predictMs, ["last_select_ms"] = selectMs, ["select_error"] = selectError,
            ["selection_equals_cpu"] = sameOnCpu,
            ["aggregator_only"] = Timing.Stage(aggMs, aggPeak, aggAll),
        };
    }
}

/// <summary>The tiny fixture in fp32 and bf16 on cuda: per-component max errors vs the fixture and vs fp32, and argmax agreement.</summary>
internal static class FixtureCheck
{
    public static JsonObject Run(string folder)
    {
        var cuda = Timing.Cuda;
        using var io = SafetensorsFile.Open(Path.Combine(folder, "io.safetensors"));
        using var fp32 = SpatialMllmModel.Load(folder, cuda, ScalarType.Float32);
        using var bf16 = SpatialMllmModel.Load(folder, cuda, ScalarType.BFloat16);
        using var noGrad = torch.no_grad();
        Tensor In(string name, ScalarType? t = null) => io.Read(name).to(cuda).to(t ?? io.Read(name).dtype);

        Dictionary<string, Tensor> Outputs(SpatialMllmModel m)
        {
            var dt = m.DType;
            var grid = In("video_grid_thw").to(ScalarType.Int64);
            var g = new GridThw((int)grid[0, 0].item<long>(), (int)grid[0, 1].item<long>(), (int)grid[0, 2].item<long>());
            var agg = m.Vggt!.aggregator;
            var o = new Dictionary<string, Tensor>
            {
                ["vision_embeds"] = m.visual.forward(In("pixel_values_videos", dt), grid),
                ["spatial_tokens_last"] = agg.ForwardLayer(In("video_tchw", dt), -1),
            };
            o["fused_embeds"] = m.connector!.forward(In("vision_embeds", dt), agg.ForwardLayer(In("video_tchw", dt), -1), agg.PatchStartIndex, g);
            var embeds = m.Language.EmbedWithVisualTokens(In("input_ids"), In("fused_embeds", dt), m.Config.Tokens.VideoTokenId);
            o["logits"] = m.Language.forward(embeds, In("position_ids")).squeeze(0);
            var gen = Generation.Generate(m.Language, In("input_ids"), embeds, In("position_ids"), In("rope_deltas"),
                new GenerationOptions(m.Config.Tokens.EosTokenIds, MaxNewTokens: (int)io.Entry("generated_ids").Shape[1]));
            o["generated_ids"] = gen.Sequences;
            return o.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32).cpu());
        }

        var a = Outputs(fp32);
        var b = Outputs(bf16);
        var result = new JsonObject();
        Console.WriteLine($"  {"tensor",-22} {"fp32 vs fixture",16} {"bf16 vs fixture",16} {"bf16 vs fp32",14}  (max abs; rel = /max(1,|ref|))");
        foreach (var name in a.Keys)
        {
            var expected = io.Read(name).to(ScalarType.Float32);
            if (!expected.shape.SequenceEqual(a[name].shape)) expected = expected.reshape(a[name].shape);
            double E(Tensor x, Tensor y) => (x - y).abs().max().item<float>();
            double scale = expected.abs().max().item<float>();
            var entry = new JsonObject
            {
                ["fp32_vs_fixture"] = E(a[name], expected), ["bf16_vs_fixture"] = E(b[name], expected), ["bf16_vs_fp32"] = E(b[name], a[name]),
                ["max_abs_reference"] = scale,
            };
            if (name == "logits")
            {
                var am = a[name].argmax(-1); var bm = b[name].argmax(-1); var fm = expected.argmax(-1);
                entry["argmax_agreement_bf16_vs_fp32"] = (am == bm).to(ScalarType.Float32).mean().item<float>();
                entry["argmax_agreement_bf16_vs_fixture"] = (bm == fm).to(ScalarType.Float32).mean().item<float>();
                entry["argmax_agreement_fp32_vs_fixture"] = (am == fm).to(ScalarType.Float32).mean().item<float>();
            }
            if (name == "generated_ids")
                entry["tokens_equal_bf16_vs_fixture"] = (b[name] == expected).to(ScalarType.Float32).mean().item<float>();
            result[name] = entry;
            Console.WriteLine($"  {name,-22} {E(a[name], expected),16:G4} {E(b[name], expected),16:G4} {E(b[name], a[name]),14:G4}  |ref|max {scale:G4}");
        }
        // The components above in fp32 on cuda are the GPU parity check; FixtureVerifier itself feeds CPU inputs (CPU only).
        return new JsonObject { ["gpu"] = MainStages.GpuName(), ["fixture"] = folder, ["tensors"] = result };
    }
}
