using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Connector;

/// <summary>The connector variants against their formulas written out op by op in float64 (as numpy would), on small
/// random weights; the regrouping is the reference's <c>preprocess_spatial_embeds</c> view/permute chain verbatim.</summary>
public sealed class ConnectorVariantTests
{
    const int Special = 5, Frames = 4, SpatialDim = 4;
    static readonly GridThw Grid = new(2, 4, 6);   // 4 frames of 4×6 patches → 2·2·3 = 12 merged tokens

    static void Randomise(nn.Module module, int seed)
    {
        torch.manual_seed(seed);
        using var noGrad = torch.no_grad();
        foreach (var (_, p) in module.named_parameters()) p.copy_(torch.randn(p.shape) * 0.5);
    }

    static Tensor Weight(nn.Module module, string name) => module.state_dict()[name].to(float64);

    static Tensor Linear(Tensor x, nn.Module module, string name, bool bias = true) =>
        torch.matmul(x, Weight(module, name + ".weight").t()) + (bias ? Weight(module, name + ".bias") : torch.zeros(1, float64));

    static Tensor RmsNorm(Tensor x, Tensor weight, double eps = 1e-6) => x * (x.pow(2).mean([-1], keepdim: true) + eps).rsqrt() * weight;

    static Tensor Gelu(Tensor x) => 0.5 * x * (1 + torch.special.erf(x / Math.Sqrt(2)));

    /// <summary>The reference's preprocess_spatial_embeds for one video (B = 1), in float64.</summary>
    static Tensor ReferenceRegroup(Tensor spatial)
    {
        var s = spatial.to(float64).unsqueeze(0)[.., .., Special..];   // [B, S, P, DD]
        long b = 1, S = s.shape[1], dd = s.shape[3], t = Grid.T, h = Grid.H, w = Grid.W;
        s = s.reshape(b, S, h, w, dd).permute(0, 1, 4, 2, 3).contiguous();                 // [B, S, DD, h, w]
        s = s.view(b, t, 2, dd, h / 2, 2, w / 2, 2).permute(0, 1, 4, 6, 5, 7, 3, 2).contiguous();
        s = s.reshape(b * t * h * w, dd * 2);
        return s.view(-1, dd * 2 * 4);
    }

    [Fact]
    public void Mlp_cat_is_the_mlp_of_the_vision_token_concatenated_with_the_normalised_regrouped_vggt_tokens()
    {
        const int language = 8;
        using var connector = new MlpCatConnector(SpatialDim, language);
        Randomise(connector, 1);
        var spatial = torch.randn(Frames, Special + Grid.H * Grid.W, SpatialDim);
        var vision = torch.randn(12, language);

        var merged = RmsNorm(ReferenceRegroup(spatial), Weight(connector, "ln_q.weight"));
        var expected = Linear(Gelu(Linear(torch.cat([vision.to(float64), merged], -1), connector, "mlp.0")), connector, "mlp.2");
        var actual = connector.forward(vision, spatial, Special, Grid);
        Assert.Equal([12, language], actual.shape);
        Assert.True(actual.to(float64).allclose(expected, rtol: 1e-5, atol: 1e-5));
    }

    [Theory]
    [InlineData(8)]   // clip_dim = language_dim: no output projection
    [InlineData(6)]   // another language width: proj
    public void Cross_attn_is_a_pre_norm_cross_attention_block_over_every_frames_patches(int language)
    {
        const int clip = 8, heads = 2, headDim = clip / heads;
        using var connector = new CrossAttnConnector(clip, SpatialDim, language, numHeads: heads, mlpRatio: 2, bias: true);
        Randomise(connector, 2);
        Assert.Equal(language == clip, connector.proj is null);
        var spatial = torch.randn(Frames, Special + Grid.H * Grid.W, SpatialDim);
        var vision = torch.randn(12, clip);

        var x = vision.to(float64);
        var kv = RmsNorm(spatial.to(float64)[.., Special..].reshape(-1, SpatialDim), Weight(connector, "kv_norm.weight"));   // [S·P, D]
        var q = Linear(RmsNorm(x, Weight(connector, "q_norm.weight")), connector, "q_proj");
        var k = Linear(kv, connector, "k_proj");
        var v = Linear(kv, connector, "v_proj");
        var perHead = Enumerable.Range(0, heads).Select(head =>
        {
            var qh = q.narrow(1, head * headDim, headDim);
            var kh = k.narrow(1, head * headDim, headDim);
            var vh = v.narrow(1, head * headDim, headDim);
            var scores = torch.matmul(qh, kh.t()) / Math.Sqrt(headDim);
            var p = scores.exp() / scores.exp().sum(-1, keepdim: true);
            return torch.matmul(p, vh);
        }).ToArray();
        x = x + Linear(torch.cat(perHead, -1), connector, "o_proj");
        x = x + Linear(Gelu(Linear(RmsNorm(x, Weight(connector, "mlp_norm.weight")), connector, "mlp.fc1")), connector, "mlp.fc2");
        var expected = language == clip ? x : Linear(x, connector, "proj");

        var actual = connector.forward(vision, spatial, Special, Grid);
        Assert.Equal([12, language], actual.shape);
        Assert.True(actual.to(float64).allclose(expected, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void Mlp_add_regrouping_equals_the_reference_chain()
    {
        var spatial = torch.randn(Frames, Special + Grid.H * Grid.W, SpatialDim);
        Assert.True(SpatialConnectors.Regroup(spatial, Special, Grid).to(float64).eq(ReferenceRegroup(spatial)).all().item<bool>());
    }

    [Theory]
    [InlineData("mlp_add", typeof(MlpAddConnector), new[] { "ln_q.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias" })]
    [InlineData("mlp_cat", typeof(MlpCatConnector), new[] { "ln_q.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias" })]
    [InlineData("cross_attn", typeof(CrossAttnConnector), new[] { "q_norm.weight", "kv_norm.weight", "q_proj.weight", "k_proj.weight",
        "v_proj.weight", "o_proj.weight", "mlp_norm.weight", "mlp.fc1.weight", "mlp.fc2.weight" })]
    public void The_config_builds_each_connector_with_checkpoint_key_names(string type, Type expected, string[] keys)
    {
        var config = ConfigFile.Load(Path.Combine(TestPaths.TinyFixture, "config.json"));
        config = config with { Connector = config.Connector! with { ConnectorType = type, NumHeads = 2 } };
        using var connector = SpatialConnectors.Create(config);
        Assert.IsType(expected, connector);
        Assert.Equal(keys.Order(), ((nn.Module)connector).state_dict().Keys.Order());
    }

    [Fact]
    public void An_unknown_connector_type_is_named()
    {
        var config = ConfigFile.Load(Path.Combine(TestPaths.TinyFixture, "config.json"));
        config = config with { Connector = config.Connector! with { ConnectorType = "mlp_mul" } };
        var e = Assert.Throws<NotSupportedException>(() => SpatialConnectors.Create(config));
        Assert.Contains("connector_config.connector_type 'mlp_mul'", e.Message);
    }

    [Fact]
    public void A_cell_connector_replaces_the_checkpoints_and_can_be_put_back()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var frames = TinyFixture.Read("frames_uint8_tchw");
        using var full = model.EncodeFrames(frames);
        using var visionOnly = model.EncodeFrames(frames, new AnswerOptions(FusionMode.VisionOnly));
        var original = model.connector!;
        model.connector = SpatialConnectors.FromFunction((vision, _, _, _) => vision.clone());
        try
        {
            using var mine = model.EncodeFrames(frames);
            Assert.True(mine.FusedEmbeds.eq(visionOnly.FusedEmbeds).all().item<bool>());
        }
        finally { model.connector = original; }
        using var back = model.EncodeFrames(frames);
        Assert.True(back.FusedEmbeds.eq(full.FusedEmbeds).all().item<bool>());
    }

    /// <summary>A connector module as a cell would write it: the checkpoint's connector at half strength.</summary>
    sealed class HalfStrength(ISpatialConnector inner) : nn.Module("half_strength"), ISpatialConnector
    {
        public Tensor forward(Tensor vision, Tensor spatial, int patchStartIndex, GridThw grid) =>
            vision + 0.5 * (inner.forward(vision, spatial, patchStartIndex, grid) - vision);
    }

    [Fact]
    public void A_connector_module_written_in_a_cell_runs_in_the_models_place()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var frames = TinyFixture.Read("frames_uint8_tchw");
        using var full = model.EncodeFrames(frames);
        using var vision = model.EncodeFrames(frames, new AnswerOptions(FusionMode.VisionOnly));
        var original = model.connector!;
        model.connector = new HalfStrength(original);
        try
        {
            using var half = model.EncodeFrames(frames);
            Assert.True(half.FusedEmbeds.allclose((full.FusedEmbeds + vision.FusedEmbeds) / 2, rtol: 1e-5, atol: 1e-5));
        }
        finally { model.connector = original; }
    }

    [Fact]
    public void Video_features_from_the_encoder_parts_equal_the_librarys_own()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var frames = TinyFixture.Read("frames_uint8_tchw");
        using var library = model.EncodeFrames(frames);
        using var parts = model.EncodeParts(frames);
        Assert.Equal(library.Grid, parts.Grid);
        Assert.Equal(5, parts.PatchStartIndex);
        using var fused = model.connector!.forward(parts.VisionEmbeds, parts.SpatialTokens!, parts.PatchStartIndex, parts.Grid);
        using var mine = VideoFeatures.FromTensors(fused, parts.Grid, parts.SecondPerGridT);
        Assert.True(mine.FusedEmbeds.eq(library.FusedEmbeds).all().item<bool>());
        Assert.Equal(library.SecondPerGridT, mine.SecondPerGridT);
        Assert.Null(mine.Fusion);
        mine.Dispose();
        Assert.False(fused.IsInvalid);   // the features held their own handle
        var e = Assert.Throws<ArgumentException>(() => VideoFeatures.FromTensors(fused[..3], parts.Grid, 1.0));
        Assert.Contains("merged tokens", e.Message);
    }
}
