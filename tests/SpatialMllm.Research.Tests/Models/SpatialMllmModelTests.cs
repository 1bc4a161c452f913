using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Verification;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models;

public class SpatialMllmModelTests(ITestOutputHelper output)
{
    [Fact]
    public void Full_size_model_on_meta_has_every_released_key_with_its_shape()
    {
        var qwen = ConfigFile.Load(Path.Combine(TestPaths.Data, "qwen2.5-vl-3b", "config.json"));
        var config = qwen with { ModelType = "spatial-mllm", Spatial = SpatialEncoderConfig.Vggt1B, Connector = new ConnectorConfig("mlp_add", -1) };
        using var model = SpatialMllmModel.Create(config, torch.META, ScalarType.BFloat16);
        var ours = model.StateDictShapes().ToDictionary(k => k.Key, k => k.Shape);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.Data, "configs", "spatial-mllm-v1.1-keys.json")));
        var released = doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(d => d.GetInt64()).ToArray());
        Assert.Equal(2626, released.Count);

        var notInModel = released.Keys.Where(k => !ours.ContainsKey(k)).ToList();
        // The track head is in the release but never run: the loader skips it by name.
        Assert.All(notInModel, k => Assert.StartsWith("spatial_encoder.vggt_model.track_head.", k));
        Assert.DoesNotContain(ours.Keys, k => !released.ContainsKey(k));
        var wrongShape = released.Where(kv => ours.TryGetValue(kv.Key, out var s) && !s.SequenceEqual(kv.Value)).Select(kv => kv.Key).ToList();
        Assert.Empty(wrongShape);
        output.WriteLine($"{released.Count} released keys: {released.Count - notInModel.Count} match a parameter of the same shape, {notInModel.Count} track-head keys skipped");
    }

    [Fact]
    public void A_fixture_whose_weights_differ_fails_verification()
    {
        string dir = TestPaths.NewTempDir("perturbed-fixture");
        foreach (string f in new[] { "config.json", "io.safetensors" }) File.Copy(Path.Combine(TestPaths.TinyFixture, f), Path.Combine(dir, f));
        using (var source = SafetensorsFile.Open(Path.Combine(TestPaths.TinyFixture, "model.safetensors")))
        {
            var tensors = source.Entries.Keys.ToDictionary(k => k, k => source.Read(k));
            tensors["connector.mlp.2.bias"] = tensors["connector.mlp.2.bias"] + 0.01f;
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        }
        var failed = FixtureVerifier.Verify(dir).Where(c => !c.Passed).Select(c => c.Name).ToList();
        Assert.Equal(["fused_embeds"], failed);
    }

    [Fact]
    public void Fusion_switches_and_the_hooks_that_look()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        var seen = new List<string>();
        using var hook = model.Hooks.Add("*", (name, _) => { if (!name.Contains('.')) seen.Add(name); });
        using var pixels = TinyFixture.Read("pixel_values_videos");
        using var frames = TinyFixture.Read("video_tchw");
        using var vision = TinyFixture.Read("vision_embeds");
        using var fused = TinyFixture.Read("fused_embeds");
        var grid = new GridThw(2, 6, 8);
        Tensor Encode(FusionMode mode, int? layer = null) => model.EncodeProcessed(pixels, grid, frames, new AnswerOptions(mode, layer), []);

        using var full = Encode(FusionMode.Full);
        Assert.True(full.allclose(fused, rtol: 1e-4, atol: 1e-4));
        Assert.Equal(["pixel_values_videos", "vision_embeds", "spatial_tokens", "fused_embeds"], seen);
        using var visionOnly = Encode(FusionMode.VisionOnly);
        Assert.True(visionOnly.allclose(vision, rtol: 1e-4, atol: 1e-4));
        using var spatialOnly = Encode(FusionMode.SpatialOnly);
        Assert.True(spatialOnly.allclose(fused - vision, rtol: 1e-4, atol: 1e-4));
        using var firstLayer = Encode(FusionMode.Full, layer: 0);
        Assert.False(firstLayer.allclose(full, rtol: 1e-3, atol: 1e-3));
    }

    [Fact]
    public void Repeated_encoding_does_not_leak_tensors()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using var pixels = TinyFixture.Read("pixel_values_videos");
        using var frames = TinyFixture.Read("video_tchw");
        var grid = new GridThw(2, 6, 8);
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        model.EncodeProcessed(pixels, grid, frames, new AnswerOptions(), []).Dispose();
        long before = stats.ThreadTotalLiveCount;
        for (int i = 0; i < 100; i++) model.EncodeProcessed(pixels, grid, frames, new AnswerOptions(), []).Dispose();
        Assert.Equal(before, stats.ThreadTotalLiveCount);
    }
}

public class PlainQwenBaselineTests
{
    [Fact]
    public void A_plain_qwen25vl_folder_loads_without_a_spatial_encoder_and_answers()
    {
        string dir = TestPaths.NewTempDir("plain-qwen");
        TinyCheckpoint.Create(dir, withSpatialEncoder: false);
        using var model = SpatialMllmModel.Load(dir, torch.CPU);
        Assert.False(model.HasSpatialEncoder);
        Assert.True(model.LoadReport!.IsComplete);
        Assert.DoesNotContain(model.LoadReport.Loaded, k => k.StartsWith("spatial_encoder.") || k.StartsWith("connector."));

        using var frames = TinyFixture.Read("frames_uint8_tchw");
        using var features = model.EncodeFrames(frames, new AnswerOptions(FusionMode.Full));
        Assert.Equal(FusionMode.VisionOnly, features.Fusion);
        var answer = model.Answer(features, "What is in the room?", new AnswerOptions(MaxNewTokens: 3));
        Assert.Equal(3, answer.GeneratedIds.Count);
        Assert.Equal(features.TokenCount, answer.VideoTokens); // frames upscaled to the video minimum of 128·28² px
    }

    [Fact]
    public void Spatial_weights_in_a_plain_folder_are_reported_as_unexpected_by_name()
    {
        string dir = TestPaths.NewTempDir("plain-with-extra");
        TinyCheckpoint.Create(dir);
        TinyCheckpoint.WriteConfigAndTokenizer(dir, withSpatialEncoder: false);
        var e = Assert.Throws<CheckpointFormatException>(() => SpatialMllmModel.Load(dir, torch.CPU).Dispose());
        Assert.Contains("unexpected", e.Message);
        Assert.Contains("connector.", e.Message);
    }
}
