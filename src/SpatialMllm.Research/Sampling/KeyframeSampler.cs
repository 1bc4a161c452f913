using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// A purely visual baseline for space-aware sampling: keyframes that look most different from each other.
/// Each candidate (the same truncated linspace as space-aware sampling) is shrunk to a 32×32 RGB thumbnail
/// (area average, values in [0,1]); the distance between two frames is the mean absolute difference of
/// their thumbnails. Greedy farthest-point selection: start at the first candidate, then repeatedly take
/// the candidate farthest from everything picked so far (ties to the earliest; stop early when every
/// remaining candidate duplicates a picked one). Unlike "largest change from the previous frame", a view
/// the camera returns to is not picked twice — the 2-D analogue of voxel coverage.
/// </summary>
internal sealed class KeyframeSampler : IFrameSampler
{
    const int Thumbnail = 32;

    readonly int k;
    readonly int candidates;

    public KeyframeSampler(int k, int candidates)
    {
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), "k must be at least 1");
        if (candidates < 1) throw new ArgumentOutOfRangeException(nameof(candidates), "candidates must be at least 1");
        (this.k, this.candidates) = (k, candidates);
    }

    public string Settings => $"keyframes(k={k},candidates={candidates},thumbnail={Thumbnail})";

    public FrameSelection Select(VideoSource video)
    {
        int total = video.Info.FrameCount;
        int[] candidateIndices = FrameIndexRules.TruncatedLinspace(total, Math.Min(candidates, total));

        using var scope = torch.NewDisposeScope();
        Tensor thumbnails = CandidateFrames.Decode(video, candidateIndices, frames =>
            torch.nn.functional.adaptive_avg_pool2d(frames.to(float32).div(255), [Thumbnail, Thumbnail]).flatten(1));
        Tensor distance = torch.cdist(thumbnails.unsqueeze(0), thumbnails.unsqueeze(0), p: 1).squeeze(0) / thumbnails.shape[1];
        double[] changeFromPrevious = candidateIndices.Length == 1 ? [0.0]
            : [0.0, .. distance.diagonal(1).to(float64).data<double>()];

        (List<int> pickOrder, List<double> distanceAtPick) = FarthestPoints(distance, Math.Min(k, candidateIndices.Length));
        return new FrameSelection(
            Settings,
            total,
            Indices: pickOrder.Order().Select(i => candidateIndices[i]).ToArray(),
            Candidates: candidateIndices,
            PickOrder: pickOrder.Select(i => candidateIndices[i]).ToArray(),
            Keyframes: new KeyframeDiagnostics(changeFromPrevious, distanceAtPick));
    }

    static (List<int> PickOrder, List<double> DistanceAtPick) FarthestPoints(Tensor distance, int count)
    {
        var pickOrder = new List<int> { 0 };
        var distanceAtPick = new List<double>();
        Tensor nearestPicked = distance[0].clone();
        while (pickOrder.Count < count)
        {
            int best = (int)nearestPicked.argmax().item<long>(); // the first maximum: ties to the earliest
            double bestDistance = nearestPicked[best].item<float>();
            if (bestDistance <= 0) break;
            pickOrder.Add(best);
            distanceAtPick.Add(bestDistance);
            nearestPicked = torch.minimum(nearestPicked, distance[best]);
        }
        return (pickOrder, distanceAtPick);
    }
}
