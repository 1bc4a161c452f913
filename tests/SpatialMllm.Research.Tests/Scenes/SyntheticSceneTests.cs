using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Scenes;

/// <summary>The synthetic scene's ground truth is self-consistent: pixels, depth, poses, world points and objects agree.</summary>
public class SyntheticSceneTests
{
    /// <summary>Small enough to render in well under a second on one core.</summary>
    internal static readonly SyntheticSceneOptions Small = new(Frames: 32, Width: 112, Height: 84);

    static readonly int[] SomeFrames = [0, 5, 13, 22, 31];

    [Fact]
    public void The_same_seed_gives_the_same_scene_and_pixels_and_another_seed_does_not()
    {
        var a = SyntheticScene.Create(7, Small);
        var b = SyntheticScene.Create(7, Small);
        var other = SyntheticScene.Create(8, Small);

        Assert.Equal(a.Room, b.Room);
        Assert.Equal(a.Objects, b.Objects);
        Assert.Equal(a.Poses.Select(p => p.Position), b.Poses.Select(p => p.Position));
        using var framesA = a.Render(SomeFrames);
        using var framesB = b.Render(SomeFrames);
        Assert.True(framesA.Rgb.Equals(framesB.Rgb));
        Assert.True(framesA.WorldPoints.Equals(framesB.WorldPoints));

        Assert.NotEqual(a.Room, other.Room);
        Assert.NotEqual(a.Objects.Select(o => (o.Category, o.X)), other.Objects.Select(o => (o.Category, o.X)));
    }

    [Theory]
    [InlineData(7)]
    [InlineData(11)]
    public void Unprojecting_depth_with_the_intrinsics_and_extrinsics_gives_the_world_points(int seed)
    {
        var scene = SyntheticScene.Create(seed, Small);
        using var frames = scene.Render(SomeFrames);
        using var scope = torch.NewDisposeScope();
        var k = scene.Intrinsics;

        // Camera point of pixel (u, v) at depth z: z·((u−cx)/fx, (v−cy)/fy, 1); world = Rᵀ(x_cam − t) for [R|t] = extrinsic.
        Tensor u = torch.arange(k.Width, dtype: float64).sub(k.Cx).div(k.Fx).reshape(1, 1, -1).expand(1, k.Height, k.Width);
        Tensor v = torch.arange(k.Height, dtype: float64).sub(k.Cy).div(k.Fy).reshape(1, -1, 1).expand(1, k.Height, k.Width);
        Tensor depth = frames.Depth.to(float64);
        Tensor camera = torch.stack([u * depth, v * depth, depth], -1);                       // [T, H, W, 3]
        Tensor extrinsic = scene.Extrinsics().index_select(0, torch.tensor(SomeFrames.Select(f => (long)f).ToArray())); // [T, 3, 4]
        Tensor rotation = extrinsic[.., .., ..3], translation = extrinsic[.., .., 3];
        Tensor world = torch.einsum("tij,thwi->thwj", rotation, camera - translation.reshape(-1, 1, 1, 3));

        double error = (world - frames.WorldPoints.to(float64)).abs().max().item<double>();
        Assert.True(error < 2e-4, $"unprojected depth is {error} m from the rendered world points");
        Assert.True(depth.min().item<double>() > 0.05, "every pixel sees a surface in front of the camera");

        // And the other way: projecting the world points lands on the pixel centres.
        Tensor back = torch.einsum("tij,thwj->thwi", rotation, frames.WorldPoints.to(float64)) + translation.reshape(-1, 1, 1, 3);
        Tensor pixelU = back[.., .., .., 0] / back[.., .., .., 2] * k.Fx + k.Cx;
        Tensor pixelV = back[.., .., .., 1] / back[.., .., .., 2] * k.Fy + k.Cy;
        Assert.True((pixelU - torch.arange(k.Width, dtype: float64)).abs().max().item<double>() < 1e-3);
        Assert.True((pixelV - torch.arange(k.Height, dtype: float64).reshape(-1, 1)).abs().max().item<double>() < 1e-3);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(3)]
    public void Every_pixel_lies_on_the_surface_it_is_labelled_with(int seed)
    {
        var scene = SyntheticScene.Create(seed, Small);
        using var frames = scene.Render(SomeFrames);
        float[] points = frames.WorldPoints.data<float>().ToArray();
        int[] ids = frames.SurfaceIds.data<int>().ToArray();
        var room = scene.Room;
        const double tolerance = 2e-3;
        var seen = new HashSet<int>();
        for (int p = 0; p < ids.Length; p++)
        {
            double x = points[3 * p], y = points[3 * p + 1], z = points[3 * p + 2];
            int id = ids[p];
            seen.Add(id);
            double offSurface = id switch
            {
                >= 0 => scene.Objects[id].Contains(x, y, z, tolerance) && !scene.Objects[id].Contains(x, y, z, -tolerance) ? 0 : 1,
                SyntheticScene.FloorId => Math.Abs(z),
                SyntheticScene.CeilingId => Math.Abs(z - room.Height),
                SyntheticScene.SouthWallId => Math.Abs(y),
                SyntheticScene.EastWallId => Math.Abs(x - room.Width),
                SyntheticScene.NorthWallId => Math.Abs(y - room.Depth),
                SyntheticScene.WestWallId => Math.Abs(x),
                _ => throw new Xunit.Sdk.XunitException($"unknown surface id {id}"),
            };
            Assert.True(offSurface < tolerance, $"pixel {p}: ({x:0.0000}, {y:0.0000}, {z:0.0000}) is not on surface {id}");
            // Nothing is seen outside the room.
            Assert.InRange(x, -tolerance, room.Width + tolerance);
            Assert.InRange(y, -tolerance, room.Depth + tolerance);
            Assert.InRange(z, -tolerance, room.Height + tolerance);
        }
        Assert.Contains(SyntheticScene.FloorId, seen);
        Assert.Contains(seen, id => id >= 0);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(7)]
    public void The_walk_shows_every_object(int seed)
    {
        var scene = SyntheticScene.Create(seed, Small);
        using var frames = scene.RenderAll();
        using var counts = torch.bincount(frames.SurfaceIds.flatten().clamp_min(-1).add(1), minlength: scene.Objects.Count + 1);
        long[] pixels = counts.data<long>().ToArray();
        foreach (var o in scene.Objects)
            Assert.True(pixels[o.Id + 1] > 0, $"{o} is never seen in {scene}");
    }

    [Fact]
    public void The_video_source_renders_the_same_frames_and_the_mp4_decodes_back_to_them()
    {
        var scene = SyntheticScene.Create(7, Small);
        int[] asked = [31, 0, 12, 12];
        using var rendered = scene.Render(asked);

        var source = scene.AsVideoSource();
        Assert.Equal((32, 112, 84), (source.Info.FrameCount, source.Info.Width, source.Info.Height));
        using (var read = source.ReadFrames(asked)) Assert.True(read.Equals(rendered.Rgb));
        Assert.Equal(source.ComputeContentHash(), SyntheticScene.Create(7, Small).AsVideoSource().ComputeContentHash());
        Assert.NotEqual(source.ComputeContentHash(), SyntheticScene.Create(8, Small).AsVideoSource().ComputeContentHash());

        string path = scene.WriteVideo(Path.Combine(TestPaths.NewTempDir("scene-video"), "synthetic", $"{scene.SceneName}.mp4"));
        var video = VideoSource.Open(path);
        Assert.Equal((32, 112, 84), (video.Info.FrameCount, video.Info.Width, video.Info.Height));
        Assert.Equal(8.0, video.Info.FramesPerSecond);
        using var decoded = video.ReadFrames(asked);
        using var difference = (decoded.to(float32) - rendered.Rgb.to(float32)).abs();
        double meanError = difference.mean().item<float>();
        double psnr = 10 * Math.Log10(255.0 * 255.0 / difference.square().mean().item<float>());
        Assert.True(meanError < 3 && psnr > 30, $"the mp4 decodes {meanError:0.00} levels (PSNR {psnr:0.0} dB) from the rendered frames");
        // The frames are in order: each decoded frame is closest to its own rendered frame.
        using var decodedAll = video.ReadFrames([0, 1, 2]);
        using var renderedAll = scene.Render([0, 1, 2]);
        for (int i = 0; i < 3; i++)
        {
            int nearest = Enumerable.Range(0, 3).MinBy(j => (decodedAll[i].to(float32) - renderedAll.Rgb[j].to(float32)).abs().mean().item<float>());
            Assert.Equal(i, nearest);
        }
    }

    [Fact]
    public void Bad_options_are_rejected_with_the_setting_named()
    {
        var odd = Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticScene.Create(1, Small with { Width = 111 }));
        Assert.Contains("111", odd.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticScene.Create(1, Small with { Frames = 1 }));
        var scene = SyntheticScene.Create(1, Small);
        var outside = Assert.Throws<ArgumentOutOfRangeException>(() => scene.Render([32]));
        Assert.Contains("32", outside.Message);
    }
}
