using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Configs;

namespace SpatialMllm.Research.Tests.Checkpoints;

public class ConfigTests
{
    [Fact]
    public void Tiny_fixture_config_reads_every_section()
    {
        var c = ConfigFile.Load(Path.Combine(TestPaths.TinyFixture, "config.json"));
        Assert.True(c.IsSpatialMllm);
        Assert.Equal("spatial-mllm", c.ModelType);
        Assert.Equal((1000, 64, 2, 4, 2), (c.Text.VocabSize, c.Text.HiddenSize, c.Text.NumHiddenLayers, c.Text.NumAttentionHeads, c.Text.NumKeyValueHeads));
        Assert.Equal([2, 3, 3], c.Text.MropeSection);
        Assert.True(c.Text.TieWordEmbeddings);
        Assert.Equal((997, 995, 994), (c.Tokens.VideoTokenId, c.Tokens.VisionStartTokenId, c.Tokens.VisionEndTokenId));
        Assert.Equal([991], c.Tokens.EosTokenIds);
        Assert.Equal((4, 32, 2, 56), (c.Vision.Depth, c.Vision.HiddenSize, c.Vision.NumHeads, c.Vision.WindowSize));
        Assert.Equal([1, 3], c.Vision.FullAttentionBlockIndexes);
        var s = c.Spatial!;
        Assert.Equal((64, 4, 4, 4), (s.EmbedDim, s.Depth, s.NumHeads, s.NumRegisterTokens));
        Assert.Equal((64, 2, 4), (s.PatchEmbed.EmbedDim, s.PatchEmbed.Depth, s.PatchEmbed.NumHeads));
        Assert.Equal(1, s.CameraHead.TrunkDepth);
        Assert.Equal(16, s.DptHead.Features);
        Assert.Equal([8, 16, 32, 32], s.DptHead.OutChannels);
        Assert.Equal(new ConnectorConfig("mlp_add", -1), c.Connector);
    }

    [Fact]
    public void Real_qwen_config_is_plain_qwen_with_3b_sizes()
    {
        var c = ConfigFile.Load(Path.Combine(TestPaths.Data, "qwen2.5-vl-3b", "config.json"));
        Assert.False(c.IsSpatialMllm);
        Assert.Null(c.Spatial);
        Assert.Equal((151936, 2048, 11008, 36, 16, 2, 128), (c.Text.VocabSize, c.Text.HiddenSize, c.Text.IntermediateSize,
            c.Text.NumHiddenLayers, c.Text.NumAttentionHeads, c.Text.NumKeyValueHeads, c.Text.HeadDim));
        Assert.Equal([16, 24, 24], c.Text.MropeSection);
        Assert.Equal(1_000_000.0, c.Text.RopeTheta);
        Assert.Equal((32, 1280, 3420, 16, 2048, 112), (c.Vision.Depth, c.Vision.HiddenSize, c.Vision.IntermediateSize,
            c.Vision.NumHeads, c.Vision.OutHiddenSize, c.Vision.WindowSize));
        Assert.Equal((151656, 151652, 151653), (c.Tokens.VideoTokenId, c.Tokens.VisionStartTokenId, c.Tokens.VisionEndTokenId));
    }

    [Fact]
    public void Spatial_config_without_sizes_defaults_to_vggt_1b()
    {
        string dir = TestPaths.NewTempDir("cfg");
        string path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, """
            {"model_type":"spatial-mllm","vision_config":{},
             "spatial_config":{"img_size":518,"patch_size":14,"embed_dim":1024,"model_type":"vggt_spatial_encoder"},
             "connector_config":{"connector_type":"mlp_add","spatial_embeds_layer_idx":-1},"some_future_field":[1,2]}
            """);
        var c = ConfigFile.Load(path);
        Assert.Equal(SpatialEncoderConfig.Vggt1B, c.Spatial);
        Assert.True(c.IsSpatialMllm);
    }
}
