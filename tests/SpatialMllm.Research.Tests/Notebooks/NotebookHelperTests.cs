using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Demo;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Notebooks;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Notebooks;

/// <summary>The library code behind the notebooks: sample inputs, the anatomy views, the encoder ablation.</summary>
public class NotebookHelperTests
{
    [Fact]
    public void Tiny_sample_is_made_once_and_loads()
    {
        string folder = Path.Combine(TestPaths.NewTempDir("tiny-sample"), "tiny");
        var sample = Samples.TinyCheckpoint(folder);
        Assert.Equal(Path.GetFullPath(folder), sample.ModelDir);
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors")));
        Assert.Equal(32, VideoSource.Open(sample.VideoPath).Info.FrameCount); // 4 s at 8 fps
        var written = File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors"));

        Assert.Equal(sample, Samples.TinyCheckpoint(folder));
        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors")));
        Assert.Empty(Directory.GetFiles(folder, "*.partial*"));
        using var model = SpatialMllmModel.Load(sample.ModelDir, torch.CPU);
        Assert.True(model.HasSpatialEncoder);
    }

    [Fact]
    public void Vision_windows_tile_the_merged_grid_from_the_top_left()
    {
        var config = ConfigFile.Load(Path.Combine(TestPaths.TinyFixture, "config.json"));
        // 6×8 patches = 3×4 merge units; window 56 px = 2×2 units: the last row of windows is cut in half.
        var map = ModelAnatomy.VisionWindows(new GridThw(2, 6, 8), config.Vision);
        Assert.Equal(new[,] { { 0, 0, 1, 1 }, { 0, 0, 1, 1 }, { 2, 2, 3, 3 } }, map);
    }

    [Fact]
    public void Spatial_merge_layout_pairs_frames_inside_each_2x2_block()
    {
        var layout = ModelAnatomy.SpatialMergeLayout(frames: 4, patchRows: 4, patchCols: 4);
        Assert.Equal(2 * 2 * 2, layout.Length);
        Assert.Equal(["f0 (0,0)", "f1 (0,0)", "f0 (0,1)", "f1 (0,1)", "f0 (1,0)", "f1 (1,0)", "f0 (1,1)", "f1 (1,1)"], layout[0]);
        Assert.Equal("f0 (0,2)", layout[1][0]);                                    // next token: the block to the right
        Assert.Equal(["f2 (2,2)", "f3 (2,2)"], layout[7][..2]);                    // last token: frames 2-3, bottom right
    }

    [Fact]
    public void Regroup_without_a_connector_is_what_the_connector_merges()
    {
        using var tokens = torch.randn(4, 5 + 16, 6);
        using var connector = new MlpAddConnector(spatialDim: 6, languageDim: 8);
        using var merged = connector.MergeSpatialTokens(tokens, 5, 2, 4, 4);
        using var regrouped = MlpAddConnector.Regroup(tokens, 5, 2, 4, 4);
        Assert.Equal(new long[] { 8, 48 }, regrouped.shape);
        Assert.True(regrouped.allclose(merged, rtol: 0, atol: 0));
        Assert.Throws<ArgumentException>(() => MlpAddConnector.Regroup(tokens, 5, 2, 3, 5));
    }

    [Fact]
    public void Positions_list_text_and_video_tokens_with_their_mrope_ids()
    {
        var config = ConfigFile.Load(Path.Combine(TestPaths.TinyFixture, "config.json"));
        var t = config.Tokens;
        // 2 text tokens, vision start, a (1, 2, 4)-patch video = 1×1×2 merged tokens, vision end, 1 text token.
        using var ids = torch.tensor(new long[] { 10, 11, t.VisionStartTokenId, t.VideoTokenId, t.VideoTokenId, t.VisionEndTokenId, 12 }).unsqueeze(0);
        var (positions, _) = RopeIndex.Compute(ids, t, config.Vision, torch.tensor(new long[] { 1, 2, 4 }).reshape(1, 3));

        var rows = ModelAnatomy.Positions(positions, ids, t);

        Assert.Equal(["text", "text", "vision start", "video", "video", "vision end", "text"], rows.Select(r => r.Kind));
        Assert.Equal((3L, 3L, 3L), (rows[3].T, rows[3].H, rows[3].W));
        Assert.Equal((3L, 3L, 4L), (rows[4].T, rows[4].H, rows[4].W));   // same frame and row, next column
        Assert.Equal((5L, 5L, 5L), (rows[5].T, rows[5].H, rows[5].W));   // text resumes at max + 1
    }

    [Fact]
    public void Encoder_ablation_compares_tokens_with_2d_only_and_full()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var frames = TinyFixture.Read("frames_uint8_tchw");

        var results = EncoderAblation.Run(model, frames, EncoderAblation.Settings([0]));

        Assert.Equal(["full (2D+3D)", "vision only (2D)", "spatial only (3D)", "full, VGGT layer 0"], results.Select(r => r.Setting));
        Assert.All(results, r => Assert.Equal(results[0].VideoTokens, r.VideoTokens));
        Assert.True(results[0].VideoTokens > 0);
        var (full, vision, spatial, layer0) = (results[0], results[1], results[2], results[3]);
        Assert.Equal(1.0, full.CosineToFull, 5);
        Assert.Equal(0.0, vision.ShiftFromVision, 6);
        Assert.True(full.ShiftFromVision > 0);
        Assert.True(spatial.ShiftFromVision > 0 && spatial.CosineToFull < 1);
        Assert.Equal(0, layer0.SpatialLayer);
        Assert.True(layer0.CosineToFull < 0.99999);
        Assert.All(results, r => Assert.Empty(r.Answers));
    }
}
