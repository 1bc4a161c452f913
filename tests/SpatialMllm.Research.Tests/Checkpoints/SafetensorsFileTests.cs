using SpatialMllm.Research.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Checkpoints;

public class SafetensorsFileTests
{
    static string FixtureIo => Path.Combine(TestPaths.TinyFixture, "io.safetensors");

    [Fact]
    public void Reads_fixture_tensors_with_their_dtype_and_shape()
    {
        using var file = SafetensorsFile.Open(FixtureIo);
        using var grid = file.Read("video_grid_thw");
        Assert.Equal(new long[] { 1, 3 }, grid.shape);
        Assert.Equal(new long[] { 2, 6, 8 }, grid.to(ScalarType.Int64).data<long>().ToArray());
        using var frames = file.Read("frames_uint8_tchw");
        Assert.Equal(ScalarType.Byte, frames.dtype);
        Assert.Equal(new long[] { 4, 3, 84, 112 }, frames.shape);
    }

    [Fact]
    public void Converts_dtype_on_read_and_copies_into_an_existing_tensor()
    {
        using var file = SafetensorsFile.Open(FixtureIo);
        using var logits = file.Read("logits");
        using var bf16 = file.Read("logits", ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, bf16.dtype);
        Assert.True(logits.allclose(bf16.to(ScalarType.Float32), rtol: 1e-2, atol: 1e-2));
        using var destination = torch.zeros(logits.shape);
        file.CopyInto("logits", destination);
        Assert.True(destination.equal(logits).all().item<bool>());
    }

    [Fact]
    public void Shape_mismatch_names_the_key_and_both_shapes()
    {
        using var file = SafetensorsFile.Open(FixtureIo);
        using var wrong = torch.zeros(3, 3);
        var e = Assert.Throws<CheckpointFormatException>(() => file.CopyInto("logits", wrong));
        Assert.Contains("'logits'", e.Message);
        Assert.Contains("[44, 1000]", e.Message);
        Assert.Contains("[3, 3]", e.Message);
    }
}
