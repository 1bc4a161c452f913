using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Demo;

/// <summary>Where the tiny checkpoint and its synthetic video are.</summary>
public sealed record TinySample(string ModelDir, string VideoPath);

/// <summary>
/// Inputs that <c>spatial-mllm demo</c>, the notebooks and the tests can always run on, made on first use (a fresh clone
/// has neither weights nor videos).
/// </summary>
public static class Samples
{
    /// <summary>The synthetic video's name inside the tiny checkpoint folder.</summary>
    public const string SyntheticVideoName = "synthetic.mp4";

    /// <summary>
    /// The tiny random-weight Spatial-MLLM (the fixture's sizes, byte-level tokenizer, seed 1234) in
    /// <paramref name="folder"/> and a 4-second synthetic video beside it (<see cref="SyntheticVideo"/>), each made only
    /// when absent. Answers from random weights are noise; the shapes and the pipeline are real.
    /// </summary>
    public static TinySample TinyCheckpoint(string folder = "checkpoints/tiny")
    {
        string modelDir = Path.GetFullPath(folder);
        if (!File.Exists(Path.Combine(modelDir, "model.safetensors"))) // written last, by a rename
            Models.TinyCheckpoint.Create(modelDir);
        return new TinySample(modelDir, SyntheticVideo(Path.Combine(modelDir, SyntheticVideoName)));
    }

    /// <summary>ffmpeg's moving test pattern (testsrc2, 320×240, 8 fps, 4 s) at <paramref name="path"/>, made only when
    /// absent (written aside and renamed, so a reader never sees half a video).</summary>
    public static string SyntheticVideo(string path)
    {
        path = Path.GetFullPath(path);
        if (File.Exists(path)) return path;
        string partial = Path.Combine(Path.GetDirectoryName(path)!, $"{Path.GetFileNameWithoutExtension(path)}-{Guid.NewGuid():N}.partial.mp4");
        Video.SyntheticVideo.Create(partial);
        File.Move(partial, path, overwrite: true);
        return path;
    }
}
