using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// The frames a sampler chose, plus what it looked at to choose them (for plots and for comparing samplers).
/// </summary>
/// <param name="Sampler">The sampler and its settings, e.g. <c>space-aware(k=16,candidates=128,…)</c>.</param>
/// <param name="SourceFrameCount">Frames in the video or frame folder.</param>
/// <param name="Indices">Chosen frame numbers of the source, ascending (temporal order).</param>
/// <param name="Candidates">Frame numbers the sampler considered, ascending; diagnostics index into this list.</param>
/// <param name="PickOrder">The chosen frame numbers in the order a greedy sampler picked them (for uniform: <see cref="Indices"/>).</param>
/// <param name="SpaceAware">Coverage diagnostics of the space-aware sampler, else null.</param>
/// <param name="Keyframes">Visual-change diagnostics of the keyframe sampler, else null.</param>
public sealed record FrameSelection(
    string Sampler,
    int SourceFrameCount,
    IReadOnlyList<int> Indices,
    IReadOnlyList<int> Candidates,
    IReadOnlyList<int> PickOrder,
    SpaceAwareDiagnostics? SpaceAware = null,
    KeyframeDiagnostics? Keyframes = null)
{
    /// <summary>
    /// A plain selection (no diagnostics): what a sampler written in a notebook cell returns. <paramref name="indices"/>
    /// are sorted and de-duplicated; each must be a frame of the source.
    /// </summary>
    public static FrameSelection Of(string sampler, int sourceFrameCount, IEnumerable<int> indices)
    {
        var sorted = indices.Distinct().Order().ToArray();
        if (sorted.Length == 0) throw new ArgumentException($"{sampler}: no frames chosen.", nameof(indices));
        if (sorted[0] < 0 || sorted[^1] >= sourceFrameCount)
            throw new ArgumentOutOfRangeException(nameof(indices), $"{sampler}: frame {(sorted[0] < 0 ? sorted[0] : sorted[^1])} is outside the source's {sourceFrameCount} frames.");
        return new FrameSelection(sampler, sourceFrameCount, sorted, sorted, sorted);
    }

    /// <summary>
    /// The voxel coverage curve of <paramref name="other"/>'s frames taken in its pick order, on this space-aware
    /// selection's voxel grid (each frame counted as the nearest of this selection's candidates, the same frame when
    /// it is one), e.g. to plot uniform and keyframe sampling against space-aware sampling.
    /// </summary>
    public IReadOnlyList<int> CoverageCurveOf(FrameSelection other)
    {
        var diagnostics = SpaceAware ?? throw new InvalidOperationException($"{Sampler} has no space-aware diagnostics (only the space-aware sampler measures coverage).");
        return diagnostics.CoverageCurveOf(other.PickOrder.Select(NearestCandidate));
    }

    int NearestCandidate(int frame)
    {
        int best = 0;
        for (int i = 1; i < Candidates.Count; i++)
            if (Math.Abs(Candidates[i] - frame) < Math.Abs(Candidates[best] - frame)) best = i;
        return best;
    }

    /// <summary>
    /// The space-aware point-cloud sample for a 3-D plot: the points whose voxel a chosen frame covers, [M, 3], and for
    /// each the source frame number that covered it first in the greedy order, [M] (float, for <c>Chart.PointCloud</c>).
    /// </summary>
    public (Tensor Points, Tensor Frame) CoveredCloud()
    {
        var cloud = SpaceAware?.Cloud ?? throw new InvalidOperationException($"{Sampler} has no space-aware diagnostics (only the space-aware sampler makes a point cloud).");
        var coveredAt = cloud.CoveredAtPick ?? throw new InvalidOperationException("This selection was cached before the cloud recorded which pick covered each point; delete the cache entry to recompute it.");
        var keep = Enumerable.Range(0, cloud.X.Count).Where(i => coveredAt[i] >= 0).ToArray();
        var xyz = keep.SelectMany(i => new[] { cloud.X[i], cloud.Y[i], cloud.Z[i] }).ToArray();
        var frame = keep.Select(i => (float)PickOrder[coveredAt[i]]).ToArray();
        return (torch.tensor(xyz).reshape(keep.Length, 3), torch.tensor(frame));
    }
}

/// <summary>What the space-aware greedy maximum coverage saw.</summary>
/// <param name="ConfidenceThreshold">τ: the 50th percentile of all confidences (numpy linear interpolation), as float32.</param>
/// <param name="VoxelSize">Shortest side of the valid points' bounding box / 20.</param>
/// <param name="BoundsMin">x, y, z minimum of the valid points.</param>
/// <param name="BoundsMax">x, y, z maximum of the valid points.</param>
/// <param name="VoxelsPerCandidate">Distinct voxels each candidate frame sees (|V_f|).</param>
/// <param name="CoverageCurve">Voxels covered after each pick, in pick order.</param>
/// <param name="TotalVoxels">Distinct voxels seen by all candidates together (the curve's ceiling).</param>
/// <param name="Cloud">An evenly strided sample of the point map for 3-D plots.</param>
/// <param name="VoxelsOfCandidate">Per candidate, the ids (0..TotalVoxels−1) of the voxels it sees, ascending: what
/// <see cref="CoverageCurveOf"/> needs to score any other choice of frames. Null in selections cached before it existed.</param>
public sealed record SpaceAwareDiagnostics(
    float ConfidenceThreshold,
    float VoxelSize,
    IReadOnlyList<float> BoundsMin,
    IReadOnlyList<float> BoundsMax,
    IReadOnlyList<int> VoxelsPerCandidate,
    IReadOnlyList<int> CoverageCurve,
    int TotalVoxels,
    PointCloudSample Cloud,
    IReadOnlyList<int[]>? VoxelsOfCandidate = null)
{
    /// <summary>
    /// Voxels covered after each frame of <paramref name="candidatePositions"/> (positions in
    /// <see cref="FrameSelection.Candidates"/>, in the order taken): the coverage curve of any frame choice, on the same
    /// voxel grid as the space-aware one.
    /// </summary>
    public IReadOnlyList<int> CoverageCurveOf(IEnumerable<int> candidatePositions)
    {
        var voxels = VoxelsOfCandidate ?? throw new InvalidOperationException("This selection was cached before the diagnostics kept each candidate's voxels; delete the cache entry to recompute it.");
        var covered = new HashSet<int>();
        var curve = new List<int>();
        foreach (int position in candidatePositions)
        {
            covered.UnionWith(voxels[position]);
            curve.Add(covered.Count);
        }
        return curve;
    }
}

/// <summary>
/// Points of the predicted point map (all of them, valid or not, every <c>stride</c>-th in [S,H,W] order).
/// <see cref="Valid"/> is the confidence mask, <see cref="Candidate"/> the position in <see cref="FrameSelection.Candidates"/>.
/// <see cref="CoveredAtPick"/>: the greedy round (0-based, an index into <see cref="FrameSelection.PickOrder"/>) whose
/// frame first covered the point's voxel; −1 for invalid points and for voxels no chosen frame sees. Null in
/// selections cached before it existed.
/// </summary>
public sealed record PointCloudSample(
    IReadOnlyList<float> X,
    IReadOnlyList<float> Y,
    IReadOnlyList<float> Z,
    IReadOnlyList<float> Confidence,
    IReadOnlyList<bool> Valid,
    IReadOnlyList<int> Candidate,
    IReadOnlyList<int>? CoveredAtPick = null);

/// <summary>What the keyframe sampler saw; distances are mean absolute differences of downscaled RGB in [0,1].</summary>
/// <param name="ChangeFromPrevious">Per candidate: distance to the previous candidate (0 for the first).</param>
/// <param name="DistanceAtPick">From the second pick on: the distance from the picked frame to the nearest frame picked before it.</param>
public sealed record KeyframeDiagnostics(
    IReadOnlyList<double> ChangeFromPrevious,
    IReadOnlyList<double> DistanceAtPick);
