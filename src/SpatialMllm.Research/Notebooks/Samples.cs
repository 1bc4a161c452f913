using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Notebooks;

/// <summary>Where the tiny checkpoint and its synthetic video are.</summary>
public sealed record TinySample(string ModelDir, string VideoPath);

/// <summary>Inputs the notebooks can always run on, made on first use (a fresh clone has neither weights nor videos).</summary>
public static class Samples
{
    /// <summary>The synthetic video's name inside the tiny checkpoint folder (the same file <c>spatial-mllm demo</c> makes).</summary>
    public const string SyntheticVideoName = "synthetic.mp4";

    /// <summary>
    /// The tiny random-weight Spatial-MLLM (the fixture's sizes, byte-level tokenizer, seed 1234) in
    /// <paramref name="folder"/> and a 4-second synthetic video beside it (ffmpeg's testsrc2, 320×240, 8 fps), each
    /// made only when absent. Answers from random weights are noise; the shapes and the pipeline are real.
    /// </summary>
    public static TinySample TinyCheckpoint(string folder = "checkpoints/tiny")
    {
        string modelDir = Path.GetFullPath(folder);
        if (!File.Exists(Path.Combine(modelDir, "model.safetensors"))) // written last, by a rename
            Models.TinyCheckpoint.Create(modelDir);
        string video = Path.Combine(modelDir, SyntheticVideoName);
        if (!File.Exists(video))
        {
            string partial = Path.Combine(modelDir, $"synthetic-{Guid.NewGuid():N}.partial.mp4");
            SyntheticVideo.Create(partial);
            File.Move(partial, video, overwrite: true);
        }
        return new TinySample(modelDir, video);
    }
}
