using SpatialMllm.Research.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Sampling;

public class VggtSamplingPreprocessorTests
{
    [Theory]
    [InlineData(640, 480, 392)] // spec: 640×480 → 518×392
    [InlineData(1920, 1080, 294)]
    [InlineData(64, 48, 392)]
    [InlineData(600, 600, 518)]
    public void Resized_height_is_a_multiple_of_14(int width, int height, int expected) =>
        Assert.Equal(expected, VggtSamplingPreprocessor.ResizedHeight(width, height));

    [Fact]
    public void Landscape_frames_become_518_wide_in_unit_range()
    {
        using var frames = torch.full([2, 3, 480, 640], 100, dtype: ScalarType.Byte);
        using var processed = VggtSamplingPreprocessor.Preprocess(frames);
        Assert.Equal(new long[] { 2, 3, 392, 518 }, processed.shape);
        Assert.Equal(ScalarType.Float32, processed.dtype);
        Assert.Equal(100 / 255f, processed.min().item<float>(), 6);
        Assert.Equal(100 / 255f, processed.max().item<float>(), 6);
    }

    [Fact]
    public void Portrait_frames_are_turned_clockwise()
    {
        // 392 wide × 518 high: after the rotation it is 518×392 already, so the resize is the identity.
        using var scope = torch.NewDisposeScope();
        Tensor frame = torch.randint(0, 256, [3, 518, 392], dtype: ScalarType.Byte);
        Tensor processed = VggtSamplingPreprocessor.Preprocess([frame]);

        Assert.Equal(new long[] { 1, 3, 392, 518 }, processed.shape);
        Tensor restored = (processed[0] * 255).round().to(ScalarType.Byte);
        // Clockwise: the output's top row is the input's left column read bottom to top.
        Assert.Equal(frame[.., .., 0].flip(1).data<byte>().ToArray(), restored[.., 0, ..].contiguous().data<byte>().ToArray());
        Assert.Equal(frame.flip(1).transpose(1, 2).contiguous().data<byte>().ToArray(), restored.contiguous().data<byte>().ToArray());
    }

    [Fact]
    public void Mixed_sizes_are_padded_with_ones_in_the_middle()
    {
        using var scope = torch.NewDisposeScope();
        Tensor wide = torch.zeros([3, 360, 640], dtype: ScalarType.Byte); // → 518×294
        Tensor standard = torch.zeros([3, 480, 640], dtype: ScalarType.Byte); // → 518×392

        Tensor processed = VggtSamplingPreprocessor.Preprocess([wide, standard]);

        Assert.Equal(new long[] { 2, 3, 392, 518 }, processed.shape);
        Assert.Equal(1f, processed[0, .., ..49, ..].min().item<float>());
        Assert.Equal(0f, processed[0, .., 49..343, ..].max().item<float>());
        Assert.Equal(1f, processed[0, .., 343.., ..].min().item<float>());
        Assert.Equal(0f, processed[1].max().item<float>());
    }

    [Fact]
    public void A_vggt_trained_on_small_frames_sees_them_at_its_own_width()
    {
        // 112×84 at target width 112: already that size, so the resize is the identity; 168×126 scales by 2/3 to 112×84.
        using var scope = torch.NewDisposeScope();
        Tensor frames = torch.randint(0, 256, [2, 3, 84, 112], dtype: ScalarType.Byte);
        Tensor processed = VggtSamplingPreprocessor.Preprocess(frames, targetWidth: 112);
        Assert.Equal(new long[] { 2, 3, 84, 112 }, processed.shape);
        Assert.Equal(frames.data<byte>().ToArray(), (processed * 255).round().to(ScalarType.Byte).data<byte>().ToArray());
        Assert.Equal(84, VggtSamplingPreprocessor.ResizedHeight(168, 126, targetWidth: 112));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => VggtSamplingPreprocessor.Preprocess(frames, targetWidth: 100));
        Assert.Contains("multiple of its 14-pixel patch, not 100", error.Message);
    }
}
