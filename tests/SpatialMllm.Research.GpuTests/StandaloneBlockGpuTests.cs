using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.GpuTests;

/// <summary>
/// Encoder blocks at the released widths (random weights, a few blocks) run on their own from the public helpers equal
/// the same blocks inside the tower and the aggregator on CUDA, where the fused kernels (vision RoPE, VGGT q/k
/// LayerNorm + RoPE) run: float32 within 1e-5, bfloat16 within 1e-2 relative (the full-attention blocks see a frame
/// pair's tokens in transformers' window order, the tower in input order).
/// </summary>
public sealed class StandaloneBlockGpuTests
{
    public static TheoryData<string> DTypes => new() { "float32", "bfloat16" };

    static double Delta(Tensor expected, Tensor actual) =>
        ((expected.to(float64) - actual.to(float64)).abs().max() / expected.to(float64).abs().max().clamp_min(1)).item<double>();

    [Theory, MemberData(nameof(DTypes))]
    public void Vision_blocks_alone_equal_the_tower(string dtypeName)
    {
        var cuda = Gpu.RequireCuda();
        var dtype = Runtime.TorchRuntime.ParseDType(dtypeName);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(5);
        // Qwen2.5-VL-3B's vision blocks, two of them: a window block and a full-attention block.
        var config = new Qwen2VisionConfig(2, 1280, 3420, 16, 3, 2048, 14, 2, 2, 112, [1], 2, "silu");
        using var visual = new Qwen2VisionTransformer(config, cuda, dtype);
        var hooks = new ModelHooks(() => visual.HookPoints);
        visual.AttachHooks(hooks, "visual.");
        var grid = torch.tensor(new long[] { 2, 34, 46 }).view(1, 3);
        var pixels = torch.randn(2 * 34 * 46, 1176, dtype, cuda);
        using var captured = hooks.Capture("visual.*", toCpu: false);
        var embeds = visual.forward(pixels, grid);

        var (windowIndex, cuWindowSeqlens) = visual.get_window_index(grid);
        var positionEmbeddings = visual.position_embeddings(grid);
        var embedded = captured["visual.patch_embed"];
        var input = embedded.view(-1, 4, 1280).index_select(0, windowIndex).view(embedded.shape[0], -1);
        double window = Delta(captured["visual.blocks.0"], visual.blocks[0].forward(input, cuWindowSeqlens, positionEmbeddings));
        double full = Delta(captured["visual.blocks.1"], visual.blocks[1].forward(captured["visual.blocks.0"], visual.cu_seqlens(grid), positionEmbeddings));
        double merger = Delta(embeds, visual.merger.forward(captured["visual.blocks.1"]).index_select(0, torch.argsort(windowIndex)));
        Gpu.Report($"Vision blocks alone vs in the tower, {dtypeName} (max error relative to max |value|)",
            [$"| block | error |", "| --- | --- |", $"| 0 (window) | {window:E2} |", $"| 1 (full) | {full:E2} |", $"| merger | {merger:E2} |"]);
        double tolerance = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        Assert.True(window <= tolerance && full <= tolerance && merger <= tolerance, $"window {window:E2}, full {full:E2}, merger {merger:E2}");
    }

    [Theory, MemberData(nameof(DTypes))]
    public void Vggt_blocks_alone_equal_the_aggregator(string dtypeName)
    {
        var cuda = Gpu.RequireCuda();
        var dtype = Runtime.TorchRuntime.ParseDType(dtypeName);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(6);
        // VGGT-1B's widths (head dim 64: the fused q/k LayerNorm + RoPE kernel runs), two block pairs, one DINO block.
        var vggt = SpatialEncoderConfig.Vggt1B;
        var config = vggt with { Depth = 2, PatchEmbed = vggt.PatchEmbed with { Depth = 1 } };
        using var aggregator = new VggtAggregator(config, cuda, dtype);
        foreach (var token in new[] { aggregator.camera_token, aggregator.register_token }) token.normal_();
        var hooks = new ModelHooks(() => aggregator.HookPoints);
        aggregator.AttachHooks(hooks, "");
        long s = 4, rows = 294 / 14, cols = 392 / 14;
        var images = torch.rand(s, 3, 294, 392, dtype: dtype, device: cuda);
        using var captured = hooks.Capture("*", toCpu: false);
        using (aggregator.forward(images, [1])) { }

        var tokens = torch.cat([VggtAggregator.slice_expand_and_flatten(aggregator.camera_token, 1, s),
            VggtAggregator.slice_expand_and_flatten(aggregator.register_token, 1, s), captured["patch_embed"]], dim: 1);
        var pos = VggtAggregator.TokenPositions(s, rows, cols, aggregator.PatchStartIndex, cuda);
        long p = tokens.shape[1];
        var lines = new List<string> { "| block | error |", "| --- | --- |" };
        double worst = 0;
        for (int i = 0; i < 2; i++)
        {
            var frameOut = captured[$"frame_blocks.{i}"];
            double frame = Delta(frameOut, aggregator.frame_blocks[i].forward(tokens, pos));
            double global = Delta(captured[$"global_blocks.{i}"], aggregator.global_blocks[i].forward(frameOut.view(1, s * p, -1), pos.view(1, s * p, 2)));
            lines.Add($"| frame_blocks.{i} | {frame:E2} |");
            lines.Add($"| global_blocks.{i} | {global:E2} |");
            worst = Math.Max(worst, Math.Max(frame, global));
            tokens = captured[$"global_blocks.{i}"].view(s, p, -1);
        }
        Gpu.Report($"VGGT blocks alone vs in the aggregator, {dtypeName} (max error relative to max |value|)", lines);
        Assert.True(worst <= (dtype == ScalarType.Float32 ? 1e-5 : 1e-2), $"worst {worst:E2}");
    }
}
