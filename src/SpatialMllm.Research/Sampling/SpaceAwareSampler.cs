using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// Space-aware frame sampling (spec §4, <c>sa_sampling.py</c>): candidates = truncated
/// linspace(0, N−1, min(candidates, N)); VGGT point map of all candidates in one pass; greedy maximum voxel
/// coverage (<see cref="SpaceAwareSelector"/>); up to k frames, sorted by time. k is not rounded to even,
/// and fewer than k can come back when coverage saturates (as in the reference). Dispose it to release a
/// VGGT it loaded.
/// </summary>
public sealed class SpaceAwareSampler : IFrameSampler, IDisposable
{
    readonly int k;
    readonly int candidates;
    readonly string predictorId;
    readonly Lazy<IPointMapPredictor> predictor;
    readonly bool ownsPredictor;
    /// <summary>One selection at a time: VGGT over the candidates takes much of a GPU's memory, so callers on several threads
    /// (an evaluation decoding videos ahead) queue here rather than run it side by side.</summary>
    readonly Lock selecting = new();

    /// <param name="predictorId">Names the model in <see cref="Settings"/>, so cached selections of different models differ.</param>
    /// <param name="ownsPredictor">Whether <see cref="Dispose"/> disposes the predictor (true when this sampler loaded it).</param>
    internal SpaceAwareSampler(int k, int candidates, Func<IPointMapPredictor> loadPredictor, string predictorId, bool ownsPredictor)
    {
        this.ownsPredictor = ownsPredictor;
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), "k must be at least 1");
        if (candidates < 1) throw new ArgumentOutOfRangeException(nameof(candidates), "candidates must be at least 1");
        (this.k, this.candidates, this.predictorId) = (k, candidates, predictorId);
        // Loaded on first use, so a sampler whose results all come from the cache never loads VGGT.
        predictor = new Lazy<IPointMapPredictor>(loadPredictor);
    }

    public string Settings => $"space-aware(k={k},candidates={candidates},model={predictorId})";

    public FrameSelection Select(VideoSource video)
    {
        int total = video.Info.FrameCount;
        int[] candidateIndices = FrameIndexRules.TruncatedLinspace(total, Math.Min(candidates, total));

        using var scope = torch.NewDisposeScope();
        Tensor worldPoints, confidence;
        lock (selecting) (worldPoints, confidence) = predictor.Value.PredictFrames(video, candidateIndices);

        var result = SpaceAwareSelector.Select(worldPoints, confidence, Math.Min(k, candidateIndices.Length));
        return new FrameSelection(
            Settings,
            total,
            Indices: result.Selected.Select(i => candidateIndices[i]).ToArray(),
            Candidates: candidateIndices,
            PickOrder: result.PickOrder.Select(i => candidateIndices[i]).ToArray(),
            SpaceAware: result.Diagnostics);
    }

    public void Dispose()
    {
        if (ownsPredictor && predictor.IsValueCreated && predictor.Value is IDisposable disposable) disposable.Dispose();
    }
}
