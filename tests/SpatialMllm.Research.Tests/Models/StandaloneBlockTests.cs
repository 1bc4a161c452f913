using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>
/// The fixture checkpoint (float32, CPU) with every encoder tensor captured through the hooks: one <c>EncodeFrames</c>
/// (vision tower, VGGT layer, connector) and one VGGT forward with its heads.
/// </summary>
public sealed class CapturedEncodersFixture : IDisposable
{
    public const string Aggregator = VggtModel.CheckpointPrefix + "aggregator.";

    public CapturedEncodersFixture()
    {
        Model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var frames = TinyFixture.Read("frames_uint8_tchw");
        Encoded = Model.Hooks.Capture(["pixel_values_videos", "visual.*", "vision_embeds", "spatial_tokens", "fused_embeds"]);
        using (var features = Model.EncodeFrames(frames)) Grid = features.Grid;
        Encoded.Stop();

        Video = TinyFixture.Read("video_tchw");
        Vggt = Model.Hooks.Capture(Aggregator + "*");
        Predictions = Model.spatial_encoder!.vggt_model.forward(Video);
        Vggt.Stop();
    }

    public SpatialMllmModel Model { get; }
    public CapturedTensors Encoded { get; }
    public GridThw Grid { get; }
    public Tensor Video { get; }
    public CapturedTensors Vggt { get; }
    public VggtPredictions Predictions { get; }

    public void Dispose()
    {
        Encoded.Dispose();
        Vggt.Dispose();
        Predictions.Dispose();
        Video.Dispose();
        Model.Dispose();
    }
}

/// <summary>
/// Every block of the vision tower and of VGGT, the merger, the heads and the connector run on their own from public
/// API, with the position inputs from the public helpers, equal the same module inside the model (float32, CPU).
/// </summary>
public sealed class StandaloneBlockTests(CapturedEncodersFixture fixture, ITestOutputHelper output) : IClassFixture<CapturedEncodersFixture>
{
    const double Tolerance = 1e-6;
    const string Aggregator = CapturedEncodersFixture.Aggregator;

    SpatialMllmModel Model => fixture.Model;

    void AssertSame(string name, Tensor inModel, Tensor alone)
    {
        Assert.Equal(inModel.shape, alone.shape);
        double delta = (inModel.to(float64) - alone.to(float64)).abs().max().item<double>();
        output.WriteLine($"{name}: max |Δ| {delta:E2}");
        Assert.True(delta <= Tolerance, $"{name}: max |Δ| {delta:E3} exceeds {Tolerance:E0}.");
    }

    internal static bool BitEqual(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>The tower's first block input as transformers' forward makes it: the patch embed's output in window order.</summary>
    Tensor FirstBlockInput(Tensor windowIndex)
    {
        var embedded = fixture.Encoded["visual.patch_embed"];
        int unit = Model.Config.Vision.SpatialMergeSize * Model.Config.Vision.SpatialMergeSize;
        return embedded.view(-1, unit, embedded.shape[1]).index_select(0, windowIndex).view(embedded.shape[0], -1);
    }

    [Fact]
    public void Each_vision_block_alone_equals_the_block_in_the_tower()
    {
        using var scope = torch.NewDisposeScope();
        var visual = Model.visual;
        var grid = fixture.Grid.ToTensor();
        var (windowIndex, cuWindowSeqlens) = visual.get_window_index(grid);
        var cuSeqlens = visual.cu_seqlens(grid);
        var positionEmbeddings = visual.position_embeddings(grid);
        var full = visual.Config.FullAttentionBlockIndexes;
        Assert.Contains(0, Enumerable.Range(0, visual.blocks.Count).Except(full));   // a window block and a full block
        Assert.NotEmpty(full);

        var input = FirstBlockInput(windowIndex);
        for (int i = 0; i < visual.blocks.Count; i++)
        {
            var alone = visual.blocks[i].forward(input, full.Contains(i) ? cuSeqlens : cuWindowSeqlens, positionEmbeddings);
            var inTower = fixture.Encoded[$"visual.blocks.{i}"];
            AssertSame($"visual.blocks.{i} ({(full.Contains(i) ? "full" : "window")} attention)", inTower, alone);
            input = inTower;
        }

        // Attending over the other block kind's segments is a different function: the segments are really used.
        var wrongSegments = visual.blocks[0].forward(FirstBlockInput(windowIndex), cuSeqlens, positionEmbeddings);
        Assert.True((wrongSegments - fixture.Encoded["visual.blocks.0"]).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void A_vision_block_is_its_norms_attention_and_mlp()
    {
        using var scope = torch.NewDisposeScope();
        var visual = Model.visual;
        var grid = fixture.Grid.ToTensor();
        var (windowIndex, cuWindowSeqlens) = visual.get_window_index(grid);
        var positionEmbeddings = visual.position_embeddings(grid);
        int fullBlock = visual.Config.FullAttentionBlockIndexes[0];
        foreach (var (i, input, segments) in new[]
                 {
                     (0, FirstBlockInput(windowIndex), cuWindowSeqlens),
                     (fullBlock, fixture.Encoded[$"visual.blocks.{fullBlock - 1}"], visual.cu_seqlens(grid)),
                 })
        {
            var block = visual.blocks[i];
            var h = input + block.attn.forward(block.norm1.forward(input), segments, positionEmbeddings);
            var composed = h + block.mlp.forward(block.norm2.forward(h));
            AssertSame($"visual.blocks.{i} from its parts", fixture.Encoded[$"visual.blocks.{i}"], composed);
        }
    }

    [Fact]
    public void The_vision_patch_embed_and_merger_alone_equal_the_tower()
    {
        using var scope = torch.NewDisposeScope();
        var visual = Model.visual;
        AssertSame("visual.patch_embed", fixture.Encoded["visual.patch_embed"], visual.patch_embed.forward(fixture.Encoded["pixel_values_videos"]));

        var (windowIndex, _) = visual.get_window_index(fixture.Grid.ToTensor());
        var lastBlock = fixture.Encoded[$"visual.blocks.{visual.blocks.Count - 1}"];
        var merged = visual.merger.forward(lastBlock).index_select(0, torch.argsort(windowIndex));   // back to input order
        AssertSame("visual.merger", fixture.Encoded["vision_embeds"], merged);
    }

    [Fact]
    public void The_vision_position_helpers_are_transformers()
    {
        using var scope = torch.NewDisposeScope();
        var visual = Model.visual;
        // 2 frame pairs of 6×8 patches: 3×4 merge units, windows of 2×2 units. transformers pads to 4×6 units, so each
        // frame has windows {0,1,4,5}, {2,3,6,7}, an empty one, {8,9}, {10,11}, an empty one.
        var grid = torch.tensor(new long[] { 2, 6, 8 }).view(1, 3);
        var (windowIndex, cuWindowSeqlens) = visual.get_window_index(grid);
        long[] frame = [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 10, 11];
        Assert.Equal([.. frame, .. frame.Select(u => u + 12)], windowIndex.data<long>().ToArray());
        Assert.Equal([0, 16, 32, 32, 40, 48, 48, 64, 80, 80, 88, 96, 96], cuWindowSeqlens.data<int>().ToArray());
        Assert.Equal([0, 48, 96], visual.cu_seqlens(grid).data<int>().ToArray());
        Assert.Equal([0, 48, 96, 144], visual.cu_seqlens(torch.tensor(new long[] { 2, 6, 8, 1, 4, 12 }).view(2, 3)).data<int>().ToArray());

        // rot_pos_emb: patch (row, col) in merge order → [row·inv_freq, col·inv_freq], inv_freq = 1/10000^(2i/(head_dim/2)).
        var angles = visual.rot_pos_emb(grid);
        int quarter = visual.Config.HeadDim / 4;
        Assert.Equal(new long[] { 96, 2 * quarter }, angles.shape);
        var invFreq = torch.pow(torch.tensor(10000f), torch.arange(0, 2 * quarter, 2, dtype: float32) / (2 * quarter)).reciprocal();
        // Merge unit 1 of frame 0 is merged (row 0, col 1); its 4th patch (index 7) is patch (1, 3); unit 4 starts row 2.
        foreach (var (patch, row, col) in new[] { (0, 0, 0), (1, 0, 1), (2, 1, 0), (7, 1, 3), (16, 2, 0), (48 + 7, 1, 3) })
            Assert.True(angles[patch].allclose(torch.cat([invFreq * row, invFreq * col]), rtol: 1e-6, atol: 0), $"patch {patch}");

        // position_embeddings: the angles in window order, doubled, as cos and sin.
        var (cos, sin) = visual.position_embeddings(grid);
        var ordered = angles.view(-1, 4, 2 * quarter).index_select(0, windowIndex).view(96, -1);
        var emb = torch.cat([ordered, ordered], -1);
        Assert.True(BitEqual(cos, emb.cos()) && BitEqual(sin, emb.sin()));
    }

    [Fact]
    public void Each_vggt_frame_and_global_block_alone_equals_the_block_in_the_aggregator()
    {
        using var scope = torch.NewDisposeScope();
        var aggregator = Model.spatial_encoder!.vggt_model.aggregator;
        var captured = fixture.Vggt;
        long s = fixture.Video.shape[0], rows = fixture.Video.shape[2] / aggregator.PatchSize, cols = fixture.Video.shape[3] / aggregator.PatchSize;

        var patchTokens = aggregator.patch_embed.forward(aggregator.NormalizeImages(fixture.Video));
        AssertSame("aggregator.patch_embed", captured[Aggregator + "patch_embed"], patchTokens);

        // VGGT's aggregator: camera and register tokens in front of each frame's patches; pos for the rope.
        var tokens = torch.cat([VggtAggregator.slice_expand_and_flatten(aggregator.camera_token, 1, s),
            VggtAggregator.slice_expand_and_flatten(aggregator.register_token, 1, s), captured[Aggregator + "patch_embed"]], dim: 1);
        var pos = VggtAggregator.TokenPositions(s, rows, cols, aggregator.PatchStartIndex);   // [S, P', 2]
        long p = tokens.shape[1], c = tokens.shape[2];
        for (int i = 0; i < aggregator.Depth; i++)
        {
            var frameOut = captured[Aggregator + $"frame_blocks.{i}"];
            AssertSame($"frame_blocks.{i}", frameOut, aggregator.frame_blocks[i].forward(tokens, pos));
            var globalOut = captured[Aggregator + $"global_blocks.{i}"];
            AssertSame($"global_blocks.{i}", globalOut, aggregator.global_blocks[i].forward(frameOut.view(1, s * p, c), pos.view(1, s * p, 2)));
            tokens = globalOut.view(s, p, c);
        }

        // Without the rope's positions (all at 0) the block is another function: pos is really used.
        var unrotated = aggregator.frame_blocks[0].forward(captured[Aggregator + "frame_blocks.0"], torch.zeros_like(pos));
        Assert.False(unrotated.allclose(aggregator.frame_blocks[0].forward(captured[Aggregator + "frame_blocks.0"], pos), rtol: 1e-4, atol: 1e-4));
    }

    [Fact]
    public void A_vggt_block_is_its_norms_attention_layer_scales_and_mlp()
    {
        using var scope = torch.NewDisposeScope();
        var aggregator = Model.spatial_encoder!.vggt_model.aggregator;
        var captured = fixture.Vggt;
        long s = fixture.Video.shape[0];
        var pos = VggtAggregator.TokenPositions(s, fixture.Video.shape[2] / aggregator.PatchSize, fixture.Video.shape[3] / aggregator.PatchSize,
            aggregator.PatchStartIndex);
        long p = pos.shape[1];
        var frameIn = captured[Aggregator + "global_blocks.0"].view(s, p, -1);        // frame block 1's input
        var globalIn = captured[Aggregator + "frame_blocks.1"].view(1, s * p, -1);    // global block 1's input
        foreach (var (name, block, x, blockPos) in new[]
                 {
                     ("frame_blocks.1", aggregator.frame_blocks[1], frameIn, pos),
                     ("global_blocks.1", aggregator.global_blocks[1], globalIn, pos.view(1, s * p, 2)),
                 })
        {
            var h = x + block.ls1.forward(block.attn.forward(block.norm1.forward(x), blockPos));
            var composed = h + block.ls2.forward(block.mlp.forward(block.norm2.forward(h)));
            AssertSame($"{name} from its parts", captured[Aggregator + name], composed);
        }
    }

    [Fact]
    public void The_heads_on_the_captured_aggregator_layers_equal_the_model()
    {
        using var scope = torch.NewDisposeScope();
        var vggt = Model.spatial_encoder!.vggt_model;
        var captured = fixture.Vggt;
        long s = fixture.Video.shape[0], h = fixture.Video.shape[2], w = fixture.Video.shape[3];
        // VGGT's aggregated_tokens_list: layer i = concat(frame block i, global block i) [B, S, P', 2C].
        var layers = Enumerable.Range(0, vggt.aggregator.Depth).Select(i => torch.cat(
        [
            captured[Aggregator + $"frame_blocks.{i}"].view(1, s, -1, vggt.aggregator.EmbedDim),
            captured[Aggregator + $"global_blocks.{i}"].view(1, s, -1, vggt.aggregator.EmbedDim),
        ], dim: -1)).ToList();
        var predictions = fixture.Predictions;

        AssertSame("camera_head", predictions.PoseEncoding, vggt.camera_head.forward(layers[^1]).squeeze(0));
        var (depth, depthConf) = vggt.depth_head.forward(layers, h, w, vggt.aggregator.PatchStartIndex);
        AssertSame("depth_head depth", predictions.Depth, depth.squeeze(0));
        AssertSame("depth_head confidence", predictions.DepthConfidence, depthConf.squeeze(0));
        var (points, pointsConf) = vggt.point_head.forward(layers, h, w, vggt.aggregator.PatchStartIndex);
        AssertSame("point_head points", predictions.WorldPoints, points.squeeze(0));
        AssertSame("point_head confidence", predictions.WorldPointsConfidence, pointsConf.squeeze(0));

        var tooFew = Assert.Throws<ArgumentException>(() => vggt.depth_head.forward(layers.Take(2).ToList(), h, w, vggt.aggregator.PatchStartIndex));
        Assert.Contains("aggregated_tokens_list", tooFew.Message);
    }

    [Fact]
    public void The_connector_alone_equals_the_fused_embeds()
    {
        using var scope = torch.NewDisposeScope();
        var encoded = fixture.Encoded;
        var fused = Model.connector!.forward(encoded["vision_embeds"], encoded["spatial_tokens"], Model.spatial_encoder!.vggt_model.aggregator.PatchStartIndex, fixture.Grid);
        AssertSame("connector", encoded["fused_embeds"], fused);
    }

    [Fact]
    public void Bad_position_inputs_are_clear_errors()
    {
        using var scope = torch.NewDisposeScope();
        var visual = Model.visual;
        var grid = fixture.Grid.ToTensor();
        var (windowIndex, _) = visual.get_window_index(grid);
        var input = FirstBlockInput(windowIndex);
        var positionEmbeddings = visual.position_embeddings(grid);
        var short_ = Assert.Throws<ArgumentException>(() => visual.blocks[0].forward(input, torch.tensor(new[] { 0, 48 }), positionEmbeddings));
        Assert.Contains("cu_seqlens", short_.Message);
        var halfTable = Assert.Throws<ArgumentException>(() => visual.blocks[0].forward(input, visual.cu_seqlens(grid), (positionEmbeddings.Cos[..10], positionEmbeddings.Sin)));
        Assert.Contains("position_embeddings cos", halfTable.Message);

        var aggregator = Model.spatial_encoder!.vggt_model.aggregator;
        var tokens = fixture.Vggt[Aggregator + "frame_blocks.0"];
        var noPos = Assert.Throws<ArgumentException>(() => aggregator.frame_blocks[0].forward(tokens));
        Assert.Contains("pass pos", noPos.Message);
        var floatPos = Assert.Throws<ArgumentException>(() => aggregator.frame_blocks[0].forward(tokens, torch.zeros(tokens.shape[0], tokens.shape[1], 2)));
        Assert.Contains("TokenPositions", floatPos.Message);
        var dino = aggregator.patch_embed.blocks[0];
        Assert.Throws<ArgumentException>(() => dino.forward(tokens, torch.zeros(tokens.shape[0], tokens.shape[1], 2, dtype: int64)));
    }
}

/// <summary>VGGT's 2D RoPE helpers against the reference's formulas (vggt/layers/rope.py), written out literally.</summary>
public sealed class VggtRotaryEmbeddingTests
{
    [Fact]
    public void Token_positions_are_the_aggregators_pos()
    {
        using var scope = torch.NewDisposeScope();
        Assert.Equal(new long[] { 0, 0, 0, 1, 0, 2, 1, 0, 1, 1, 1, 2 }, PositionGetter.Get(2, 2, 3)[1].flatten().data<long>().ToArray());
        var pos = VggtAggregator.TokenPositions(3, 2, 3, patchStartIndex: 5);
        Assert.Equal(new long[] { 3, 5 + 6, 2 }, pos.shape);
        Assert.True(pos[.., ..5].eq(0).all().item<bool>());
        Assert.True(StandaloneBlockTests.BitEqual(pos[.., 5..], PositionGetter.Get(3, 2, 3) + 1));
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void The_rotary_embedding_is_vggts_formula(ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var generator = new torch.Generator(3, torch.CPU);
        var tokens = torch.randn([2, 4, 11, 64], generator: generator).to(dtype);                    // [B, heads, N, D]
        var positions = torch.randint(0, 9, [2, 11, 2], generator: generator, dtype: int64);          // differ per batch row
        using var rope = new RotaryPositionEmbedding2D();
        var ours = rope.forward(tokens, positions);
        var reference = Reference(tokens, positions, 100.0);
        Assert.True(StandaloneBlockTests.BitEqual(ours, reference), $"max |Δ| {(ours.to(float32) - reference.to(float32)).abs().max().item<float>()}");
        // One batch row of positions serves every row (broadcast), as the aggregator's shared pos.
        Assert.True(StandaloneBlockTests.BitEqual(rope.forward(tokens, positions[..1]), Reference(tokens, positions[..1].expand(2, -1, -1), 100.0)));
    }

    /// <summary>RotaryPositionEmbedding2D.forward as written in VGGT: frequency table, embedding lookup, rotate half.</summary>
    static Tensor Reference(Tensor tokens, Tensor positions, double baseFrequency)
    {
        long featureDim = tokens.shape[^1] / 2;
        long maxPosition = positions.max().item<long>() + 1;
        var exponents = torch.arange(0, featureDim, 2).to(float32) / featureDim;
        var invFreq = torch.pow(torch.tensor((float)baseFrequency), exponents).reciprocal();
        var angles = torch.outer(torch.arange(maxPosition, dtype: float32), invFreq).to(tokens.dtype);
        angles = torch.cat([angles, angles], -1);
        Tensor cosComp = angles.cos(), sinComp = angles.sin();
        Tensor Rope1D(Tensor x, Tensor index)
        {
            var cos = cosComp.index_select(0, index.flatten()).view(index.shape[0], 1, index.shape[1], -1);
            var sin = sinComp.index_select(0, index.flatten()).view(index.shape[0], 1, index.shape[1], -1);
            long half = x.shape[^1] / 2;
            var rotated = torch.cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
            return x * cos + rotated * sin;
        }
        var parts = tokens.chunk(2, -1);
        return torch.cat([Rope1D(parts[0], positions[.., .., 0]), Rope1D(parts[1], positions[.., .., 1])], -1);
    }
}
