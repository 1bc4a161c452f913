using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Tests.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Processing;

public class QwenVideoProcessorTests(ITestOutputHelper output)
{
    static readonly string ModelFolder = Path.Combine(TestPaths.Data, "qwen2.5-vl-3b");

    static QwenVideoProcessor Processor() => QwenVideoProcessor.FromFolder(ModelFolder);

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().ToDouble();

    [Fact]
    public void Fixture_pixel_values_videos_match_exactly()
    {
        using var scope = NewDisposeScope();
        var frames = TinyFixture.Read("frames_uint8_tchw");
        // The fixture's second_per_grid_ts is 2.5 on purpose: fps 0.8.
        using var inputs = Processor().ProcessResized(frames, fps: 0.8);

        var expected = TinyFixture.Read("pixel_values_videos");
        Assert.Equal(expected.shape, inputs.PixelValuesVideos.shape);
        Assert.Equal(ScalarType.Float32, inputs.PixelValuesVideos.dtype);
        double err = MaxAbs(inputs.PixelValuesVideos, expected);
        output.WriteLine($"pixel_values_videos max abs error {err:E3}");
        Assert.True(err <= 1e-6, $"max abs error {err:E3}");

        Assert.Equal(new GridThw(2, 6, 8), inputs.Grid);
        Assert.Equal(TinyFixture.Read("video_grid_thw").data<long>().ToArray(), inputs.Grid.ToTensor().data<long>().ToArray());
        Assert.Equal(TinyFixture.Read("second_per_grid_ts").ToDouble(), inputs.SecondPerGridT);
        Assert.Equal(24, inputs.Grid.MergedTokenCount(2));

        double vggtErr = MaxAbs(inputs.VideoTchw, TinyFixture.Read("video_tchw"));
        output.WriteLine($"video_tchw max abs error {vggtErr:E3}");
        Assert.True(vggtErr <= 1e-7, $"video_tchw max abs error {vggtErr:E3}");
    }

    [Fact]
    public void Default_fps_gives_one_second_per_temporal_patch()
    {
        using var scope = NewDisposeScope();
        using var inputs = Processor().ProcessResized(zeros(2, 3, 56, 56, ScalarType.Byte));
        Assert.Equal(1.0, inputs.SecondPerGridT);
    }

    [Fact]
    public void Patch_rows_and_columns_follow_merge_order()
    {
        using var scope = NewDisposeScope();
        var processor = Processor();
        var frames = randint(0, 256, [4, 3, 56, 84], dtype: ScalarType.Byte, generator: new Generator(7));
        using var inputs = processor.ProcessResized(frames);
        Assert.Equal(new GridThw(2, 4, 6), inputs.Grid);

        var mean = QwenImageProcessorConfig.ClipMean;
        var std = QwenImageProcessorConfig.ClipStd;
        var pv = inputs.PixelValuesVideos.data<float>().ToArray();
        var raw = frames.data<byte>().ToArray();
        var random = new Random(3);
        for (int k = 0; k < 500; k++)
        {
            int row = random.Next(inputs.Grid.PatchCount), col = random.Next(1176);
            // row = ((t·(H/2) + bh)·(W/2) + bw)·4 + sh·2 + sw; col = ((c·2 + tt)·14 + y)·14 + x
            int sw = row % 2, sh = row / 2 % 2, bw = row / 4 % 3, bh = row / 12 % 2, t = row / 24;
            int x = col % 14, y = col / 14 % 14, tt = col / 196 % 2, c = col / 392;
            int frame = t * 2 + tt, py = (bh * 2 + sh) * 14 + y, px = (bw * 2 + sw) * 14 + x;
            byte value = raw[((frame * 3 + c) * 56 + py) * 84 + px];
            float expected = ((float)(value * (1.0 / 255)) - (float)mean[c]) / (float)std[c];
            Assert.Equal(expected, pv[row * 1176 + col]);
        }
    }

    [Fact]
    public void Odd_frame_count_repeats_the_last_frame()
    {
        using var scope = NewDisposeScope();
        var frames = randint(0, 256, [3, 3, 56, 56], dtype: ScalarType.Byte, generator: new Generator(11));
        using var odd = Processor().ProcessResized(frames);
        using var even = Processor().ProcessResized(cat([frames, frames[2..3]], 0));

        Assert.Equal(new GridThw(2, 4, 4), odd.Grid);
        Assert.Equal(0.0, MaxAbs(odd.PixelValuesVideos, even.PixelValuesVideos));
        Assert.Equal([4L, 3, 56, 56], odd.VideoTchw.shape);
        Assert.Equal(0.0, MaxAbs(odd.VideoTchw[3], odd.VideoTchw[2]));
        // Inside the second temporal patch both time slices are frame 2.
        var patch = odd.PixelValuesVideos[16..].view(16, 3, 2, 14, 14);
        Assert.Equal(0.0, MaxAbs(patch[.., .., 0], patch[.., .., 1]));
    }

    [Fact]
    public void Zero_frames_is_a_clear_error()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => Processor().Process(zeros(0, 3, 480, 640, ScalarType.Byte)));
        Assert.Contains("no frames", e.Message);
        e = Assert.Throws<ArgumentException>(() => Processor().Process(Array.Empty<Tensor>()));
        Assert.Contains("no frames", e.Message);
    }

    [Fact]
    public void Frames_of_mixed_sizes_are_a_clear_error()
    {
        using var scope = NewDisposeScope();
        Tensor[] frames = [zeros(3, 480, 640, ScalarType.Byte), zeros(3, 480, 640, ScalarType.Byte), zeros(3, 360, 640, ScalarType.Byte)];
        var e = Assert.Throws<ArgumentException>(() => Processor().Process(frames));
        Assert.Contains("480×640", e.Message);
        Assert.Contains("360×640", e.Message);
    }

    [Fact]
    public void Wrong_layout_or_dtype_is_a_clear_error()
    {
        using var scope = NewDisposeScope();
        Assert.Contains("[T, 3, H, W]", Assert.Throws<ArgumentException>(() => Processor().Process(zeros(2, 480, 640, 3, ScalarType.Byte))).Message);
        Assert.Contains("uint8", Assert.Throws<ArgumentException>(() => Processor().Process(zeros(2, 3, 480, 640))).Message);
    }

    [Fact]
    public void Frames_smaller_than_28_px_are_scaled_up_to_the_minimum_pixels()
    {
        using var scope = NewDisposeScope();
        var frames = randint(0, 256, [2, 3, 10, 20], dtype: ScalarType.Byte, generator: new Generator(5));
        using var inputs = Processor().Process(frames);
        // smart_resize(10, 20) under the video limits: 224×448 (see SmartResizeTests).
        Assert.Equal(new GridThw(1, 16, 32), inputs.Grid);
        Assert.Equal([2L, 3, 224, 448], inputs.VideoTchw.shape);
        Assert.Equal([512L, 1176], inputs.PixelValuesVideos.shape);
    }

    [Fact]
    public void Too_extreme_aspect_ratio_is_a_clear_error()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => Processor().Process(zeros(2, 3, 2, 500, ScalarType.Byte)));
        Assert.Contains("aspect ratio", e.Message);
    }

    [Fact]
    public void Frames_the_image_processor_would_resize_again_are_refused()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<NotSupportedException>(() => Processor().ProcessResized(zeros(2, 3, 480, 640, ScalarType.Byte)));
        Assert.Contains("480×640", e.Message);
    }

    [Fact]
    public void Canonical_16_frames_of_640x480_give_3128_tokens()
    {
        using var scope = NewDisposeScope();
        using var inputs = Processor().Process(zeros(16, 3, 480, 640, ScalarType.Byte));
        Assert.Equal(new GridThw(8, 34, 46), inputs.Grid);
        Assert.Equal(3128, inputs.Grid.MergedTokenCount(2));
        Assert.Equal([16L, 3, 476, 644], inputs.VideoTchw.shape);
    }

    [Fact]
    public void Resize_is_antialiased_bicubic_rounded_to_uint8()
    {
        using var scope = NewDisposeScope();
        var frames = randint(0, 256, [2, 3, 84, 112], dtype: ScalarType.Byte, generator: new Generator(9));
        foreach (var (h, w) in new[] { (56, 84), (168, 196) })
        {
            var resized = QwenVideoProcessor.ResizeFrames(frames, h, w);
            Assert.Equal(ScalarType.Byte, resized.dtype);
            var reference = AntialiasedBicubicReference.Resize(frames, h, w);
            var diff = (resized.to(ScalarType.Int32) - reference.to(ScalarType.Int32)).abs();
            output.WriteLine($"{h}×{w}: {diff.gt(0).sum().ToInt64()} of {diff.numel()} values differ from the reference, max {diff.max().ToInt32()}");
            // Independent double-precision reference: equal up to float32 rounding at .5 boundaries.
            Assert.True(diff.max().ToInt32() <= 1, $"{h}×{w}: max diff {diff.max().ToInt32()}");
            Assert.True(diff.to(ScalarType.Float32).mean().ToDouble() < 0.01, $"{h}×{w}: mean diff {diff.to(ScalarType.Float32).mean().ToDouble()}");
        }
        // Antialiasing is on: plain bicubic downscaling differs.
        var plain = nn.functional.interpolate(frames.to(ScalarType.Float32), size: [56, 84], mode: InterpolationMode.Bicubic, align_corners: false)
            .clamp(0, 255).round().to(ScalarType.Byte);
        Assert.NotEqual(0.0, MaxAbs(plain.to(ScalarType.Float32), QwenVideoProcessor.ResizeFrames(frames, 56, 84).to(ScalarType.Float32)));
    }

    [Theory]
    [InlineData(56, 84, "0122d9ebf9502206a49163f04d650f38b090a8a2bbc9c381f94adb2e93414d52")]
    [InlineData(168, 196, "25b2a57cceed6651af45b140e10f9c405a8e5a15a82f197f30dead667bb7bae3")]
    [InlineData(280, 392, "22dddf8b5413d06b51683f3b3ad8338b51942d569cc679823621bb5fba9f8b54")]
    public void Resize_matches_torchvision_byte_for_byte(int h, int w, string torchvisionSha256)
    {
        // SHA-256 of torchvision 0.26 (torch 2.11) resize(v, [h, w], BICUBIC, antialias=True) on these frames:
        // v[i] = ((i · 2654435761) >> 13) & 255 over [4, 3, 84, 112], flattened.
        using var scope = NewDisposeScope();
        var values = new byte[4 * 3 * 84 * 112];
        for (long i = 0; i < values.Length; i++) values[i] = (byte)(((i * 2654435761L) >> 13) & 255);
        var resized = QwenVideoProcessor.ResizeFrames(tensor(values, [4, 3, 84, 112]), h, w);
        string sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(resized.data<byte>().ToArray()));
        Assert.Equal(torchvisionSha256, sha);
    }

    [Fact]
    public void Config_reads_preprocessor_config_and_ignores_unknown_fields()
    {
        var c = QwenImageProcessorConfig.FromFile(Path.Combine(ModelFolder, "preprocessor_config.json"));
        Assert.Equal(3136, c.MinPixels);
        Assert.Equal(12845056, c.MaxPixels);
        Assert.Equal((14, 2, 2), (c.PatchSize, c.TemporalPatchSize, c.MergeSize));
        Assert.Equal(QwenImageProcessorConfig.ClipMean, c.ImageMean);
        Assert.Equal(QwenImageProcessorConfig.ClipStd, c.ImageStd);
        Assert.Equal(1.0 / 255, c.RescaleFactor);
    }

    [Fact]
    public void Config_defaults_are_the_reference_defaults()
    {
        string dir = TestPaths.NewTempDir("ppcfg");
        string path = Path.Combine(dir, "preprocessor_config.json");
        File.WriteAllText(path, """{"patch_size": 14, "something_new": [1, 2]}""");
        var c = QwenImageProcessorConfig.FromFile(path);
        Assert.Equal(new QwenImageProcessorConfig(), c);
        Assert.Equal(56 * 56, c.MinPixels);
        Assert.Equal(28 * 28 * 1280, c.MaxPixels);

        File.WriteAllText(path, """{"size": {"shortest_edge": 100, "longest_edge": 2000}}""");
        Assert.Equal((100, 2000), (QwenImageProcessorConfig.FromFile(path).MinPixels, QwenImageProcessorConfig.FromFile(path).MaxPixels));
    }

    [Fact]
    public void Malformed_config_error_names_the_file()
    {
        string dir = TestPaths.NewTempDir("ppcfg-bad");
        string path = Path.Combine(dir, "preprocessor_config.json");
        File.WriteAllText(path, """{"patch_size": "fourteen"}""");
        Assert.Contains(path, Assert.Throws<InvalidDataException>(() => QwenImageProcessorConfig.FromFile(path)).Message);
        File.WriteAllText(path, """{"image_mean": [0.5, 0.5]}""");
        Assert.Contains(path, Assert.Throws<InvalidDataException>(() => QwenImageProcessorConfig.FromFile(path)).Message);
        Assert.Throws<FileNotFoundException>(() => QwenImageProcessorConfig.FromFile(Path.Combine(dir, "missing.json")));
    }
}
