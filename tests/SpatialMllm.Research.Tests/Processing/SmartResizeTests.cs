using SpatialMllm.Research.Processing;

namespace SpatialMllm.Research.Tests.Processing;

public class SmartResizeTests
{
    // Expected sizes computed with qwen-vl-utils' smart_resize in Python (16 frames: max 602,112 px).
    [Theory]
    [InlineData(480, 640, 476, 644)]
    [InlineData(1440, 1920, 672, 896)]
    [InlineData(960, 1280, 672, 896)]
    [InlineData(1080, 1920, 560, 1008)]
    [InlineData(84, 112, 280, 392)]   // below VIDEO_MIN_PIXELS: scaled up
    [InlineData(10, 20, 224, 448)]    // smaller than one 28-px factor: rounds to 28, then scaled up to min pixels
    [InlineData(7, 7, 336, 336)]
    [InlineData(1, 150, 28, 3892)]    // a 1-px side stays one factor high
    public void Video_frames_of_16_resize_as_qwen_vl_utils(int h, int w, int expectedH, int expectedW) =>
        Assert.Equal((expectedH, expectedW), VideoPixelLimits.Default.ResizedSize(16, h, w));

    [Fact]
    public void Max_pixels_per_frame_follows_the_total_budget()
    {
        var limits = VideoPixelLimits.Default;
        Assert.Equal(90_316_800, limits.TotalPixels);
        Assert.Equal(602_112, limits.MaxPixelsPerFrame(16));
        Assert.Equal(451_584.0, limits.MaxPixelsPerFrame(400)); // 90316800 / 400 · 2
        Assert.Equal(105_369, limits.MaxPixelsPerFrame(100_000)); // floor: int(1.05 · min)
    }

    [Fact]
    public void Requested_size_is_only_rounded_to_the_factor() =>
        Assert.Equal((476, 644), VideoPixelLimits.Default.RequestedSize(480, 640));

    [Fact]
    public void Rounding_is_half_to_even()
    {
        Assert.Equal(56, SmartResize.RoundByFactor(70, 28));  // 2.5 → 2
        Assert.Equal(112, SmartResize.RoundByFactor(98, 28)); // 3.5 → 4
        var (h, w) = SmartResize.Compute(70, 98, 28, minPixels: 1, maxPixels: 1e9);
        Assert.Equal((56, 112), (h, w));
    }

    [Fact]
    public void Too_extreme_aspect_ratio_is_refused()
    {
        Assert.Equal((28, 5600), SmartResize.Compute(28, 5600)); // exactly 200 is allowed
        var e = Assert.Throws<ArgumentException>(() => SmartResize.Compute(28, 5601));
        Assert.Contains("aspect ratio", e.Message);
        Assert.Contains("28×5601", e.Message);
    }

    [Fact]
    public void Non_positive_size_is_refused() =>
        Assert.Throws<ArgumentException>(() => SmartResize.Compute(0, 10));

    [Theory]
    [InlineData(16, 16)]
    [InlineData(15, 16)] // round(7.5) = 8
    [InlineData(17, 16)] // round(8.5) = 8: half to even
    [InlineData(19, 20)]
    public void Frame_count_rounds_to_even(int requested, int expected) =>
        Assert.Equal(expected, VideoFrameSampling.ForCount(requested, totalFrames: 100));

    [Fact]
    public void Frame_count_out_of_range_is_refused()
    {
        Assert.Throws<ArgumentException>(() => VideoFrameSampling.ForCount(16, totalFrames: 10));
        Assert.Throws<ArgumentException>(() => VideoFrameSampling.ForCount(0, totalFrames: 10));
    }

    [Fact]
    public void Frame_count_for_fps_is_clamped_and_even()
    {
        Assert.Equal(20, VideoFrameSampling.ForFps(300, videoFps: 30));   // 10 s at 2 fps
        Assert.Equal(4, VideoFrameSampling.ForFps(30, videoFps: 30));     // 2 frames → min 4
        Assert.Equal(6, VideoFrameSampling.ForFps(7, videoFps: 1));       // 14 → min(·, 7 frames) → floor-even 6
        Assert.Equal(768, VideoFrameSampling.ForFps(100_000, videoFps: 30));
    }

    [Fact]
    public void Frame_indices_are_rounded_linspace_half_to_even()
    {
        Assert.Equal([0L, 7, 13, 20, 26, 33, 40, 46, 53, 59, 66, 73, 79, 86, 92, 99], VideoFrameSampling.Indices(0, 99, 16));
        Assert.Equal([0L, 2, 3, 4, 6, 8, 9, 10, 12, 14, 15], VideoFrameSampling.Indices(0, 15, 11));
    }
}
