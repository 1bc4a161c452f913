using System.Globalization;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Scenes;

/// <summary>How a synthetic scene's walk is written: an H.264 mp4 (ffmpeg, near-lossless) or a folder of PNG frames
/// (managed, lossless, no ffmpeg needed to write or read it).</summary>
public enum SceneVideoFormat { Mp4, Frames }

/// <summary>The size and length of a synthetic scene's video.</summary>
/// <param name="Frames">Frames of the camera walk.</param>
/// <param name="Width">Frame width in pixels (even, for H.264).</param>
/// <param name="Height">Frame height in pixels (even, for H.264).</param>
/// <param name="FramesPerSecond">The video's frame rate (the walk takes Frames / FramesPerSecond seconds).</param>
/// <param name="HorizontalFovDegrees">The camera's horizontal field of view.</param>
public sealed record SyntheticSceneOptions(
    int Frames = 128,
    int Width = 224,
    int Height = 168,
    double FramesPerSecond = 8,
    double HorizontalFovDegrees = 75)
{
    /// <summary>Most frames a scene's walk may have (an hour at the default 8 fps would be 28,800: far beyond any benchmark video).</summary>
    public const int MaxFrames = 10_000;

    /// <summary>Most pixels a frame may have (1920 × 1080): a chunk of frames is rendered in memory with depth and world points.</summary>
    public const int MaxPixels = 1920 * 1080;

    /// <summary>Longest side of a frame.</summary>
    public const int MaxSide = 4096;

    internal void Validate()
    {
        if (Frames is < 2 or > MaxFrames) throw new ArgumentOutOfRangeException(nameof(Frames), $"a scene has 2 to {MaxFrames} frames, not {Frames}");
        if (Width < 16 || Height < 16 || Width % 2 != 0 || Height % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(Width), $"frames must be at least 16×16 and of even size (H.264), not {Width}×{Height}");
        if (Width > MaxSide || Height > MaxSide || (long)Width * Height > MaxPixels)
            throw new ArgumentOutOfRangeException(nameof(Width), $"frames may have at most {MaxPixels} pixels (1920×1080) and sides of {MaxSide}, not {Width}×{Height}");
        if (!(FramesPerSecond > 0) || double.IsInfinity(FramesPerSecond)) throw new ArgumentOutOfRangeException(nameof(FramesPerSecond), $"frame rate must be positive and finite, not {FramesPerSecond}");
        if (!(HorizontalFovDegrees is > 10 and < 170)) throw new ArgumentOutOfRangeException(nameof(HorizontalFovDegrees), $"field of view must be in (10°, 170°), not {HorizontalFovDegrees}");
    }
}

/// <summary>
/// A synthetic indoor scene with exact ground truth, made on the fly from a seed (no downloads): a room with furniture
/// of named categories (boxes and cylinders of known size and colour), a camera walking through it, and for every frame
/// the image, depth, camera pose and world points. Use it wherever a video goes:
/// <code>
/// var scene = SyntheticScene.Create(seed: 7);
/// string video = scene.WriteVideo("scenes/seed0007.mp4");   // for EncodeVideo, sample-frames, evaluate
/// using var frames = scene.Render([0, 10, 20]);             // RGB, depth, world points, object ids
/// var questions = scene.Questions();                        // VSI-Bench-style, with answers by construction
/// </code>
/// World frame: metres, x along the room's width, y along its depth, z up, floor at z = 0.
/// </summary>
public sealed class SyntheticScene
{
    /// <summary>The VSI-Bench "dataset" name of synthetic scenes (videos go under {root}/synthetic/).</summary>
    public const string DatasetName = "synthetic";

    /// <summary>Surface ids of the room in <see cref="SceneFrames.SurfaceIds"/>; objects are 0, 1, …. The walls are
    /// south (y = 0), east (x = width), north (y = depth) and west (x = 0).</summary>
    public const int FloorId = SceneRenderer.Floor, CeilingId = SceneRenderer.Ceiling,
        SouthWallId = SceneRenderer.SouthWall, EastWallId = SceneRenderer.EastWall,
        NorthWallId = SceneRenderer.NorthWall, WestWallId = SceneRenderer.WestWall;

    SyntheticScene(int seed, SyntheticSceneOptions options, Room room, IReadOnlyList<SceneObject> objects, IReadOnlyList<CameraPose> poses)
    {
        (Seed, Options, Room, Objects, Poses) = (seed, options, room, objects, poses);
        Intrinsics = CameraIntrinsics.FromFieldOfView(options.Width, options.Height, options.HorizontalFovDegrees);
        objectPixelCounts = new Lazy<int[][]>(CountObjectPixels);
    }

    /// <summary>Draws the room, its objects and the camera walk from <paramref name="seed"/> (cheap: nothing is rendered yet).</summary>
    public static SyntheticScene Create(int seed = 0, SyntheticSceneOptions? options = null)
    {
        options ??= new SyntheticSceneOptions();
        options.Validate();
        var rng = new Random(seed);
        Room room = SceneGenerator.DrawRoom(rng);
        var objects = SceneGenerator.DrawObjects(rng, room);
        var poses = SceneGenerator.DrawWalk(rng, room, options.Frames);
        return new SyntheticScene(seed, options, room, objects, poses);
    }

    public int Seed { get; }
    public SyntheticSceneOptions Options { get; }
    public Room Room { get; }
    /// <summary>The furniture; <see cref="SceneObject.Id"/> is the position in this list.</summary>
    public IReadOnlyList<SceneObject> Objects { get; }
    /// <summary>One camera pose per frame.</summary>
    public IReadOnlyList<CameraPose> Poses { get; }
    /// <summary>The same pinhole camera for every frame.</summary>
    public CameraIntrinsics Intrinsics { get; }
    public int FrameCount => Poses.Count;

    /// <summary>The scene's name in a VSI-Bench-style layout: <c>seed0007</c>.</summary>
    public string SceneName => $"seed{Seed.ToString("D4", CultureInfo.InvariantCulture)}";

    /// <summary>Per frame, per object id: how many pixels show the object (rendered once, on first use).</summary>
    internal int[][] ObjectPixelCounts => objectPixelCounts.Value;

    readonly Lazy<int[][]> objectPixelCounts;

    int[][] CountObjectPixels()
    {
        var counts = new List<int[]>();
        foreach (int[] chunk in Enumerable.Range(0, FrameCount).Chunk(16))
        {
            using var frames = Render(chunk);
            int[] ids = frames.SurfaceIds.data<int>().ToArray();
            int pixels = Options.Width * Options.Height;
            for (int t = 0; t < chunk.Length; t++)
            {
                var perObject = new int[Objects.Count];
                for (int p = t * pixels; p < (t + 1) * pixels; p++)
                    if (ids[p] >= 0) perObject[ids[p]]++;
                counts.Add(perObject);
            }
        }
        return [.. counts];
    }

    /// <summary>VSI-Bench-style questions with answers from the ground truth (see <see cref="SceneQuestions"/>).</summary>
    public IReadOnlyList<VsiBenchQuestion> Questions(int firstId = 0, int perType = 4) => SceneQuestions.Generate(this, firstId, perType);

    /// <summary>Renders frames (0-based, any order) with their depth, world points and surface ids.</summary>
    public SceneFrames Render(IReadOnlyList<int> frames) => SceneRenderer.Render(this, frames);

    /// <summary>Renders every frame.</summary>
    public SceneFrames RenderAll() => Render([.. Enumerable.Range(0, FrameCount)]);

    /// <summary>Extrinsics (world → camera, [R | t]) of every frame, float64 [T,3,4], as VGGT's camera head predicts them.</summary>
    public Tensor Extrinsics()
    {
        using var scope = torch.NewDisposeScope();
        return torch.stack(Poses.Select(p => p.Extrinsic()).ToList()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Space-aware sampling (the selector of <see cref="FrameSampler.SpaceAware(int, string, int, TorchSharp.torch.Device?, int)"/>) on this scene's true
    /// point maps instead of VGGT's: runs on the CPU, and its coverage curves count real voxels of the room. Select on
    /// <see cref="AsVideoSource"/>, the mp4 from <see cref="WriteVideo"/> or the frames from <see cref="WriteFrames"/>.
    /// </summary>
    public SpaceAwareSampler SpaceAwareSampler(int k, int candidates = 128)
    {
        var truth = new GroundTruthPointMaps(this);
        return FrameSampler.SpaceAware(k, truth, truth.Id, candidates);
    }

    /// <summary>The scene as a video source that renders frames on request (no file; nothing is lost to a codec).</summary>
    public VideoSource AsVideoSource() => new SyntheticSceneVideo(this);

    /// <summary>
    /// Writes the walk as an H.264 mp4 (near-lossless CRF 12, yuv420p) at <paramref name="path"/>, rendering a few frames
    /// at a time; returns the full path. The file then works wherever a video goes (<c>EncodeVideo</c>, the CLI).
    /// </summary>
    public string WriteVideo(string path)
    {
        string fullPath = Path.GetFullPath(path);
        Ffmpeg.WriteMp4(RenderedFrameBytes(), Options.Width, Options.Height, Options.FramesPerSecond, fullPath);
        return fullPath;
    }

    /// <summary>
    /// Writes the walk as a folder of PNG frames (<c>frame000000.png</c>, …: the exact rendered pixels, lossless) at
    /// <paramref name="folder"/>, replacing what is there; returns the full path. It opens wherever a video goes
    /// (<see cref="VideoSource.Open"/> takes a frame folder) and, unlike <see cref="WriteVideo"/>, needs no ffmpeg to
    /// write or read. Written beside the target first and renamed, so a reader never sees half a walk.
    /// </summary>
    public string WriteFrames(string folder)
    {
        string fullPath = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(fullPath)!;
        string partial = Path.Combine(parent, $".{Path.GetFileName(fullPath)}-{Guid.NewGuid():N}.partial");
        Directory.CreateDirectory(partial);
        try
        {
            foreach (var (frame, index) in RenderedFrameBytes().Select((frame, index) => (frame, index)))
                File.WriteAllBytes(Path.Combine(partial, $"frame{index.ToString("D6", CultureInfo.InvariantCulture)}.png"), Png.EncodeRgb(frame, Options.Width, Options.Height));
            if (Directory.Exists(fullPath)) Directory.Delete(fullPath, recursive: true);
            Directory.Move(partial, fullPath);
        }
        finally
        {
            if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        }
        return fullPath;
    }

    /// <summary>Writes the walk as <paramref name="format"/> says: <see cref="WriteVideo"/> or <see cref="WriteFrames"/>.</summary>
    public string Write(string path, SceneVideoFormat format) => format switch
    {
        SceneVideoFormat.Mp4 => WriteVideo(path),
        SceneVideoFormat.Frames => WriteFrames(path),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "a scene is written as Mp4 or Frames"),
    };

    IEnumerable<byte[]> RenderedFrameBytes()
    {
        foreach (int[] chunk in Enumerable.Range(0, FrameCount).Chunk(8))
        {
            List<byte[]> packed;
            using (var frames = Render(chunk)) packed = RgbFrames.ToPacked(frames.Rgb);
            foreach (byte[] frame in packed) yield return frame;
        }
    }

    /// <summary>Hash input: everything that decides the pixels (the renderer's version too, so a changed look is a new video).</summary>
    internal string Fingerprint => $"synthetic-scene/v1 seed={Seed} {Options}";

    public override string ToString() =>
        $"synthetic scene {SceneName} ({Room.Width:0.0}×{Room.Depth:0.0} m, {Objects.Count} objects, {FrameCount} frames of {Options.Width}×{Options.Height})";
}

/// <summary>A <see cref="SyntheticScene"/> as a <see cref="VideoSource"/>: frames are rendered when read.</summary>
internal sealed class SyntheticSceneVideo(SyntheticScene scene) : VideoSource
{
    public SyntheticScene Scene => scene;

    public override VideoInfo Info { get; } = new(
        Path: $"{SyntheticScene.DatasetName}/{scene.SceneName}",
        FrameCount: scene.FrameCount,
        Width: scene.Options.Width,
        Height: scene.Options.Height,
        FramesPerSecond: scene.Options.FramesPerSecond,
        Duration: TimeSpan.FromSeconds(scene.FrameCount / scene.Options.FramesPerSecond),
        Rotation: 0);

    public override Tensor ReadFrames(IReadOnlyList<int> indices)
    {
        CheckIndices(indices);
        using var frames = scene.Render(indices);
        return frames.Rgb.clone();
    }

    public override string ComputeContentHash() =>
        Sha256Hex([h => h.AppendData(System.Text.Encoding.UTF8.GetBytes(scene.Fingerprint))]);
}
