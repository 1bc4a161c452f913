using SpatialMllm.Research.Models.Vggt;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Vggt;

/// <summary>The tiny VGGT against the reference Python outputs in io.safetensors (fp32, CPU).</summary>
[Collection(TinyFixtureCollection.Name)]
public sealed class VggtParityTests(TinyFixture fixture, ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    [Fact]
    public void Load_report_is_complete()
    {
        var report = fixture.VggtReport;
        Assert.Empty(report.Missing);
        Assert.Empty(report.Unexpected);
        Assert.All(report.Skipped, key => Assert.StartsWith(VggtModel.CheckpointPrefix + "track_head.", key));
        Assert.Equal(fixture.Checkpoint.Keys.Count(k => k.StartsWith(VggtModel.CheckpointPrefix, StringComparison.Ordinal)),
            report.Loaded.Count + report.Skipped.Count);
    }

    [Fact]
    public void Track_head_keys_are_skipped_by_name_and_nothing_else()
    {
        // The tiny fixture has no track head; the released checkpoints do. Write the fixture's VGGT tensors plus
        // a track-head tensor and an unrelated stray tensor into a fresh checkpoint folder.
        string folder = TestPaths.NewTempDir("vggt-track-head");
        File.Copy(Path.Combine(TestPaths.TinyFixture, "config.json"), Path.Combine(folder, "config.json"));
        var tensors = fixture.Checkpoint.Keys.Where(k => k.StartsWith(VggtModel.CheckpointPrefix, StringComparison.Ordinal))
            .ToDictionary(k => k, k => fixture.Checkpoint.Read(k));
        tensors[VggtModel.CheckpointPrefix + "track_head.tracker.fmap_norm.weight"] = torch.ones(128);
        tensors[VggtModel.CheckpointPrefix + "stray.weight"] = torch.ones(3);
        WriteFloat32Safetensors(Path.Combine(folder, "model.safetensors"), tensors);
        foreach (var t in tensors.Values) t.Dispose();

        using var checkpoint = SpatialMllm.Research.Checkpoints.Checkpoint.Open(folder);
        using var model = new VggtModel(checkpoint.Config.Spatial!);
        var report = model.LoadWeights(checkpoint);
        Assert.Equal([VggtModel.CheckpointPrefix + "track_head.tracker.fmap_norm.weight"], report.Skipped);
        Assert.Equal([VggtModel.CheckpointPrefix + "stray.weight"], report.Unexpected);
        Assert.Empty(report.Missing);
    }

    static void WriteFloat32Safetensors(string path, IReadOnlyDictionary<string, Tensor> tensors)
    {
        var header = new Dictionary<string, object>();
        var data = new List<byte[]>();
        long offset = 0;
        foreach (var (key, tensor) in tensors)
        {
            var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(tensor.contiguous().data<float>().ToArray().AsSpan()).ToArray();
            header[key] = new { dtype = "F32", shape = tensor.shape, data_offsets = new[] { offset, offset + bytes.Length } };
            data.Add(bytes);
            offset += bytes.Length;
        }
        byte[] json = System.Text.Encoding.UTF8.GetBytes(System.Text.Json.JsonSerializer.Serialize(header));
        using var file = File.Create(path);
        file.Write(BitConverter.GetBytes((ulong)json.Length));
        file.Write(json);
        foreach (var bytes in data) file.Write(bytes);
    }

    [Fact]
    public void ForwardLayer_returns_one_layer()
    {
        using var scope = torch.NewDisposeScope();
        var last = fixture.Vggt.aggregator.ForwardLayer(fixture.Frames);
        TensorComparison.AssertClose("spatial_tokens_last (ForwardLayer)", TinyFixture.Read("spatial_tokens_last"), last, Tolerance, output);
        var first = fixture.Vggt.aggregator.ForwardLayer(fixture.Frames, 0);
        TensorComparison.AssertClose("spatial_tokens_first (ForwardLayer)", TinyFixture.Read("spatial_tokens_first"), first, Tolerance, output);
    }

    [Fact]
    public void Batched_sequences_are_independent()
    {
        using var scope = torch.NewDisposeScope();
        var batch = torch.stack([fixture.Frames, fixture.Frames]);                   // [2, S, 3, H, W]
        var last = fixture.Vggt.aggregator.ForwardLayer(batch);
        Assert.Equal(new long[] { 2, 4, 53, 128 }, last.shape);
        var expected = TinyFixture.Read("spatial_tokens_last");
        TensorComparison.AssertClose("batch item 0", expected, last[0], Tolerance, output);
        TensorComparison.AssertClose("batch item 1", expected, last[1], Tolerance, output);
    }

    [Fact]
    public void A_single_frame_uses_the_first_frame_slots_only()
    {
        using var scope = torch.NewDisposeScope();
        using var predictions = fixture.Vggt.forward(fixture.Frames[..1]);
        Assert.Equal(new long[] { 1, 9 }, predictions.PoseEncoding.shape);
        Assert.Equal(new long[] { 1, 84, 112, 3 }, predictions.WorldPoints.shape);
    }

    [Fact]
    public void Point_map_prediction_matches_the_point_head()
    {
        using var scope = torch.NewDisposeScope();
        var (worldPoints, conf) = fixture.Vggt.Predict(fixture.Frames);
        TensorComparison.AssertClose("Predict world points", TinyFixture.Read("vggt_world_points"), worldPoints, Tolerance, output);
        TensorComparison.AssertClose("Predict conf", TinyFixture.Read("vggt_world_points_conf"), conf, Tolerance, output);
    }

    [Fact]
    public void Dpt_frame_chunks_do_not_change_the_result()
    {
        // 4 frames in chunks of 3 (a full and a partial chunk) against the one-chunk reference output.
        using var scope = torch.NewDisposeScope();
        var config = fixture.Checkpoint.Config.Spatial!;
        using var layers = fixture.Vggt.aggregator.forward(fixture.Frames.unsqueeze(0), config.DptHead.IntermediateLayerIdx);
        var head = new DptHead(2 * config.EmbedDim, 4, DptActivation.InverseLog, config.PatchSize, config.DptHead);
        SpatialMllm.Research.Checkpoints.StateDictLoader.Load(head, fixture.Checkpoint, VggtModel.CheckpointPrefix + "point_head.").ThrowIfIncomplete("point_head");
        var (points, _) = head.forward(layers, 84, 112, framesChunkSize: 3);
        TensorComparison.AssertClose("world points, chunks of 3", TinyFixture.Read("vggt_world_points"), points.squeeze(0), Tolerance, output);
    }

    [Fact]
    public void Pose_encoding_converts_to_extrinsics_and_intrinsics()
    {
        using var scope = torch.NewDisposeScope();
        // Identity rotation (x, y, z, w) = (0, 0, 0, 2): not unit length on purpose; 90° fields of view.
        var encoding = torch.tensor(new float[] { 1, 2, 3, 0, 0, 0, 2, (float)(Math.PI / 2), (float)(Math.PI / 2) }).view(1, 1, 9);
        var (extrinsics, intrinsics) = PoseEncoding.ToExtrinsicsIntrinsics(encoding, 84, 112);
        var expectedExtrinsics = torch.tensor(new float[] { 1, 0, 0, 1, 0, 1, 0, 2, 0, 0, 1, 3 }).view(1, 1, 3, 4);
        var expectedIntrinsics = torch.tensor(new float[] { 56, 0, 56, 0, 42, 42, 0, 0, 1 }).view(1, 1, 3, 3);
        TensorComparison.AssertClose("extrinsics", expectedExtrinsics, extrinsics, 1e-5);
        TensorComparison.AssertClose("intrinsics", expectedIntrinsics, intrinsics, 1e-5);
    }
}
