using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Video;

/// <summary>The managed PNG codec (<see cref="Png"/>) against ffmpeg's PNG decoder and encoder, and a frame folder read
/// without ffmpeg.</summary>
public class PngTests
{
    static readonly SyntheticSceneOptions Small = new(Frames: 4, Width: 64, Height: 48);

    static byte[] ManagedDecode(string file, int width, int height)
    {
        byte[] rgb = new byte[width * height * 3];
        Png.DecodeRgb(file, rgb);
        return rgb;
    }

    [Fact]
    public void Managed_decode_gives_ffmpegs_pixels_on_scene_frames_ffmpeg_wrote()
    {
        string dir = TestPaths.NewTempDir("png-scene-ffmpeg");
        var scene = SyntheticScene.Create(5, Small);
        List<byte[]> rendered;
        using (var frames = scene.RenderAll()) rendered = RgbFrames.ToPacked(frames.Rgb);
        string[] paths = [.. Enumerable.Range(0, rendered.Count).Select(i => Path.Combine(dir, $"f{i}.png"))];
        Ffmpeg.WritePngs(rendered, Small.Width, Small.Height, paths);

        byte[] byFfmpeg = Ffmpeg.DecodePngs(dir, paths, Small.Width, Small.Height);
        byte[] managed = [.. paths.SelectMany(p => ManagedDecode(p, Small.Width, Small.Height))];
        Assert.Equal(byFfmpeg, managed);
        Assert.Equal(rendered.SelectMany(f => f).ToArray(), managed);
    }

    /// <summary>ffmpeg's PNG encoder with each row filter (<c>-pred</c>; mixed chooses per row), RGB and RGBA.</summary>
    [Theory]
    [InlineData("none", "rgb24")]
    [InlineData("sub", "rgb24")]
    [InlineData("up", "rgb24")]
    [InlineData("avg", "rgb24")]
    [InlineData("paeth", "rgb24")]
    [InlineData("mixed", "rgb24")]
    [InlineData("paeth", "rgba")]
    [InlineData("avg", "rgba")]
    [InlineData("mixed", "rgba")]
    public void Managed_decode_gives_ffmpegs_pixels_for_every_row_filter(string prediction, string pixelFormat)
    {
        string dir = TestPaths.NewTempDir("png-filters");
        // testsrc: colour bars, a gradient, digits and a moving box: every filter meets edges and smooth runs. In RGBA the
        // alpha varies too (geq), so dropping it is tested against ffmpeg's own rgba → rgb24.
        string alpha = pixelFormat == "rgba" ? ",format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='X*3'" : "";
        string file = TestVideos.Ffmpeg(dir, "frame.png", $"-f lavfi -i testsrc=s=75x50:r=1{alpha} -frames:v 1 -pix_fmt {pixelFormat} -pred {prediction}");
        Assert.True(Png.ReadHeader(file).IsManagedDecodable, $"ffmpeg wrote {Png.ReadHeader(file)}");

        Assert.Equal(Ffmpeg.DecodePngs(dir, [file], 75, 50), ManagedDecode(file, 75, 50));
    }

    [Fact]
    public void Encoded_frames_round_trip_and_ffmpeg_reads_them_alike()
    {
        string dir = TestPaths.NewTempDir("png-round-trip");
        var random = new Random(3);
        const int width = 37, height = 21;   // odd sizes: no row is a multiple of anything
        byte[] noise = new byte[width * height * 3];
        random.NextBytes(noise);
        byte[] gradient = [.. Enumerable.Range(0, width * height * 3).Select(i => (byte)(i / 3 % width * 7 + i / (3 * width) * 3 + i % 3 * 50))];
        foreach (var (name, rgb) in new[] { ("noise", noise), ("gradient", gradient) })
        {
            string file = Path.Combine(dir, name + ".png");
            File.WriteAllBytes(file, Png.EncodeRgb(rgb, width, height));
            Assert.Equal(new Png.Header(width, height, 8, 2, 0), Png.ReadHeader(file));
            Assert.Equal(rgb, ManagedDecode(file, width, height));
            Assert.Equal(rgb, Ffmpeg.DecodePngs(dir, [file], width, height));
        }
    }

    [Fact]
    public void A_damaged_or_truncated_png_is_an_error_naming_the_file()
    {
        string dir = TestPaths.NewTempDir("png-damaged");
        byte[] png = Png.EncodeRgb(new byte[16 * 8 * 3], 16, 8);

        string truncated = Path.Combine(dir, "truncated.png");
        File.WriteAllBytes(truncated, png[..(png.Length - 20)]);
        var e = Assert.Throws<VideoReadException>(() => ManagedDecode(truncated, 16, 8));
        Assert.StartsWith(truncated + ": is truncated", e.Message);

        string flipped = Path.Combine(dir, "flipped.png");
        byte[] damaged = [.. png];
        damaged[45] ^= 0x10;   // inside IDAT's data
        File.WriteAllBytes(flipped, damaged);
        e = Assert.Throws<VideoReadException>(() => ManagedDecode(flipped, 16, 8));
        Assert.StartsWith(flipped, e.Message);
        Assert.Contains("CRC of its IDAT chunk", e.Message);

        string notPng = Path.Combine(dir, "text.png");
        File.WriteAllText(notPng, "not a png, but long enough to hold a header");
        Assert.Equal($"{notPng}: is not a PNG file", Assert.Throws<VideoReadException>(() => Png.ReadHeader(notPng)).Message);
    }

    [Fact]
    public void A_folder_mixing_managed_and_ffmpeg_kinds_decodes_each_in_order()
    {
        string dir = TestPaths.NewTempDir("png-mixed-kinds");
        // Frames 0–3 of the numbered pattern: 0 and 2 as 8-bit RGB (managed), 1 and 3 as 16-bit (ffmpeg).
        string[] eight = TestVideos.NumberedPngs(dir, frames: 4, prefix: "a_");
        string[] sixteen = TestVideos.NumberedPngs(dir, frames: 4, prefix: "b_", pixelFormat: "rgb48be");
        string folder = Directory.CreateDirectory(Path.Combine(dir, "frames")).FullName;
        for (int i = 0; i < 4; i++) File.Copy(i % 2 == 0 ? eight[i] : sixteen[i], Path.Combine(folder, $"frame{i}.png"));
        Assert.False(Png.ReadHeader(sixteen[1]).IsManagedDecodable);

        using var frames = VideoSource.Open(folder).ReadFrames([3, 0, 1, 2]);
        Assert.Equal(new[] { 3, 0, 1, 2 }, Enumerable.Range(0, 4).Select(t => frames[t, 0].max().item<byte>() / 4));
        Assert.Equal(4 * 10, frames[2, 1, 5, 10].item<byte>());
        Assert.Equal(4 * 5, frames[2, 2, 5, 10].item<byte>());
    }

    [Fact]
    public void A_scene_written_as_frames_reads_back_as_its_exact_rendered_pixels()
    {
        var scene = SyntheticScene.Create(7, Small);
        string folder = scene.WriteFrames(Path.Combine(TestPaths.NewTempDir("scene-frames"), "synthetic", scene.SceneName));
        Assert.Equal([.. Enumerable.Range(0, 4).Select(i => $"frame{i:D6}.png")], Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order());
        Assert.Equal([folder], Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(folder)!));   // no partial folder left

        var video = VideoSource.Open(folder);
        Assert.Equal((4, 64, 48), (video.Info.FrameCount, video.Info.Width, video.Info.Height));
        using var rendered = scene.RenderAll();
        using var read = video.ReadFrames([0, 1, 2, 3]);
        Assert.True(read.Equals(rendered.Rgb), "the frame folder's pixels differ from the rendered ones");

        // Written again over itself: replaced, same bytes.
        string hash = video.ComputeContentHash();
        scene.WriteFrames(folder);
        Assert.Equal(hash, VideoSource.Open(folder).ComputeContentHash());
    }
}
