using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// The selection step of space-aware sampling (spec §4 steps 4–7, <c>sa_sampling.py</c>) on a predicted
/// point map: confidence mask, scene-adaptive voxel grid, per-frame voxel sets, greedy maximum coverage.
/// All per-point work is tensor ops, so it runs where the point map lives (CPU or GPU).
/// </summary>
public static class SpaceAwareSelector
{
    /// <summary>Voxels along the shortest side of the valid points' bounding box.</summary>
    public const int VoxelsAlongShortestSide = 20;

    /// <summary>Points with a confidence at or below this are never valid, whatever the median.</summary>
    public const float MinimumConfidence = 0.1f;

    /// <summary>Chosen positions (0-based, ascending) among the S frames, the greedy pick order, and diagnostics.</summary>
    public sealed record Result(IReadOnlyList<int> Selected, IReadOnlyList<int> PickOrder, SpaceAwareDiagnostics Diagnostics);

    /// <summary>
    /// Picks up to <paramref name="k"/> of the S frames of <paramref name="worldPoints"/> [S,H,W,3] with
    /// confidences <paramref name="confidence"/> [S,H,W]. Fewer come back when no remaining frame adds a voxel.
    /// </summary>
    /// <param name="cloudPoints">About how many points to keep in <see cref="SpaceAwareDiagnostics.Cloud"/>.</param>
    public static Result Select(Tensor worldPoints, Tensor confidence, int k, int cloudPoints = 20_000)
    {
        if (worldPoints.dim() != 4 || worldPoints.shape[3] != 3)
            throw new ArgumentException($"world points must be [S,H,W,3], got [{string.Join(",", worldPoints.shape)}]", nameof(worldPoints));
        if (confidence.dim() != 3 || !confidence.shape.SequenceEqual(worldPoints.shape[..3]))
            throw new ArgumentException($"confidence must be [S,H,W] = [{string.Join(",", worldPoints.shape[..3])}], got [{string.Join(",", confidence.shape)}]", nameof(confidence));
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), "k must be at least 1");

        using var scope = torch.NewDisposeScope();
        int frames = (int)worldPoints.shape[0];
        long pointsPerFrame = worldPoints.shape[1] * worldPoints.shape[2];
        // The reference computes in float32 whatever dtype VGGT ran in (bf16 autocast outputs fp32 heads).
        Tensor points = worldPoints.to(float32).reshape(-1, 3);
        Tensor conf = confidence.to(float32).reshape(-1);

        float threshold = MedianAsNumpyPercentile(conf);
        Tensor valid = (conf >= threshold) & (conf > MinimumConfidence);
        Tensor validPoints = points[valid];
        if (validPoints.shape[0] == 0)
            throw new InvalidOperationException($"no point has confidence ≥ {threshold} and > {MinimumConfidence}; space-aware sampling has nothing to cover");

        Tensor boundsMin = validPoints.amin(0);
        Tensor boundsMax = validPoints.amax(0);
        // float32 throughout, as the reference: (max − min) per axis, shortest, / 20.
        Tensor voxelSize = (boundsMax - boundsMin).min() / VoxelsAlongShortestSide;
        float voxel = voxelSize.item<float>();
        if (!(voxel > 0) || float.IsInfinity(voxel))
            throw new InvalidOperationException($"the valid points have no extent along some axis (voxel size {voxel}); space-aware sampling cannot voxelise a flat or degenerate scene");

        Tensor voxelCoords = ((validPoints - boundsMin) / voxelSize).floor().to(int64); // ≥ 0 by construction
        Tensor frameOfPoint = torch.arange(frames, dtype: int64, device: points.device)
            .repeat_interleave(pointsPerFrame)[valid];

        // Number the occupied voxels 0..V−1, then keep each (frame, voxel) pair once: the per-frame voxel sets.
        Tensor voxelKey = LinearVoxelKey(voxelCoords);
        (Tensor occupied, Tensor? inverse, _) = torch.unique(voxelKey, sorted: true, return_inverse: true);
        Tensor voxelOfPoint = inverse!;
        long voxelCount = occupied.shape[0];
        Tensor pairs = torch.unique(frameOfPoint * voxelCount + voxelOfPoint, sorted: true).Item1;
        Tensor pairFrame = pairs.div(voxelCount, rounding_mode: RoundingMode.floor);
        Tensor pairVoxel = pairs.remainder(voxelCount);
        int[] voxelsPerFrame = ToInts(torch.bincount(pairFrame, minlength: frames));

        (List<int> pickOrder, List<int> coverage, Tensor coveredAt) = GreedyMaximumCoverage(pairFrame, pairVoxel, frames, voxelCount, k);
        // Per point of the whole map: the round that first covered its voxel (−1: invalid, or never covered).
        Tensor pointCoveredAt = torch.full(points.shape[0], -1L, dtype: int64, device: points.device)
            .masked_scatter(valid, coveredAt.index(voxelOfPoint));

        var diagnostics = new SpaceAwareDiagnostics(
            ConfidenceThreshold: threshold,
            VoxelSize: voxel,
            BoundsMin: ToFloats(boundsMin),
            BoundsMax: ToFloats(boundsMax),
            VoxelsPerCandidate: voxelsPerFrame,
            CoverageCurve: coverage,
            TotalVoxels: (int)voxelCount,
            Cloud: SampleCloud(points, conf, valid, pointCoveredAt, pointsPerFrame, cloudPoints),
            VoxelsOfCandidate: SplitByFrame(ToInts(pairVoxel), voxelsPerFrame));
        return new Result(pickOrder.Order().ToArray(), pickOrder, diagnostics);
    }

    /// <summary>
    /// <c>np.percentile(conf, 50)</c> (method "linear") rounded to float32, which is what the reference's
    /// comparison <c>conf_f32 &gt;= threshold</c> uses: the lerp of the two middle order statistics in float64,
    /// with numpy's form b − (b−a)(1−γ) for γ ≥ 0.5.
    /// </summary>
    internal static float MedianAsNumpyPercentile(Tensor values)
    {
        using var scope = torch.NewDisposeScope();
        Tensor flat = values.reshape(-1);
        long n = flat.shape[0];
        double position = 0.5 * (n - 1);
        long below = (long)Math.Floor(position);
        long above = Math.Min(below + 1, n - 1);
        double gamma = position - below;
        double a = flat.kthvalue(below + 1, 0).values.item<float>();
        double b = flat.kthvalue(above + 1, 0).values.item<float>();
        double lerp = gamma >= 0.5 ? b - (b - a) * (1 - gamma) : a + (b - a) * gamma;
        return (float)lerp;
    }

    /// <summary>Packs non-negative (x, y, z) voxel coordinates [P,3] into one int64 per voxel.</summary>
    static Tensor LinearVoxelKey(Tensor voxelCoords)
    {
        long[] extent = voxelCoords.amax(0).cpu().data<long>().Select(m => m + 1).ToArray();
        if ((double)extent[0] * extent[1] * extent[2] >= long.MaxValue)
            throw new InvalidOperationException($"the voxel grid {extent[0]}×{extent[1]}×{extent[2]} is too large to index; the scene's extents are too unequal");
        return (voxelCoords[.., 0] * extent[1] + voxelCoords[.., 1]) * extent[2] + voxelCoords[.., 2];
    }

    /// <summary>
    /// Each round picks the frame adding the most uncovered voxels; ties go to the lowest frame (argmax
    /// returns the first maximum, as the reference's strict "&gt;" over ascending frames); stops when the
    /// best gain is 0. CoveredAt [V]: the round that first covered each voxel, −1 for never.
    /// </summary>
    static (List<int> PickOrder, List<int> Coverage, Tensor CoveredAt) GreedyMaximumCoverage(Tensor pairFrame, Tensor pairVoxel, int frames, long voxelCount, int k)
    {
        var pickOrder = new List<int>();
        var coverage = new List<int>();
        Tensor covered = torch.zeros(voxelCount, dtype: @bool, device: pairFrame.device);
        Tensor picked = torch.zeros(frames, dtype: @bool, device: pairFrame.device);
        Tensor coveredAt = torch.full(voxelCount, -1L, dtype: int64, device: pairFrame.device);
        int coveredCount = 0;
        for (int round = 0; round < Math.Min(k, frames); round++)
        {
            using var roundScope = torch.NewDisposeScope();
            Tensor newPerPair = covered.index(pairVoxel).logical_not().to(int64);
            Tensor gain = torch.zeros(frames, dtype: int64, device: pairFrame.device)
                .index_add_(0, pairFrame, newPerPair, alpha: 1)
                .masked_fill(picked, -1);
            int best = (int)gain.argmax().item<long>();
            int bestGain = (int)gain[best].item<long>();
            if (bestGain <= 0) break;
            Tensor seen = pairVoxel.masked_select(pairFrame == best);
            Tensor fresh = seen.masked_select(covered.index(seen).logical_not());
            coveredAt.index_put_(torch.tensor((long)round, device: pairFrame.device), fresh);
            covered.index_put_(torch.tensor(true, device: pairFrame.device), seen);
            picked[best] = torch.tensor(true, device: pairFrame.device);
            coveredCount += bestGain;
            pickOrder.Add(best);
            coverage.Add(coveredCount);
        }
        return (pickOrder, coverage, coveredAt);
    }

    static PointCloudSample SampleCloud(Tensor points, Tensor conf, Tensor valid, Tensor coveredAt, long pointsPerFrame, int cloudPoints)
    {
        long total = points.shape[0];
        long stride = Math.Max(1, (total + cloudPoints - 1) / Math.Max(1, cloudPoints));
        Tensor at = torch.arange(0, total, stride, dtype: int64, device: points.device);
        Tensor xyz = points.index_select(0, at).cpu();
        return new PointCloudSample(
            X: ToFloats(xyz[.., 0]),
            Y: ToFloats(xyz[.., 1]),
            Z: ToFloats(xyz[.., 2]),
            Confidence: ToFloats(conf.index_select(0, at)),
            Valid: valid.index_select(0, at).cpu().data<bool>().ToArray(),
            Candidate: ToInts(at.div(pointsPerFrame, rounding_mode: RoundingMode.floor)),
            CoveredAtPick: ToInts(coveredAt.index_select(0, at)));
    }

    /// <summary>Voxel ids of the (frame, voxel) pairs, which come sorted by frame then voxel, cut into one array per frame.</summary>
    static int[][] SplitByFrame(int[] voxels, int[] countPerFrame)
    {
        var result = new int[countPerFrame.Length][];
        int start = 0;
        for (int f = 0; f < countPerFrame.Length; f++)
        {
            result[f] = voxels[start..(start + countPerFrame[f])];
            start += countPerFrame[f];
        }
        return result;
    }

    static float[] ToFloats(Tensor t) => t.contiguous().cpu().data<float>().ToArray();

    static int[] ToInts(Tensor t) => t.cpu().to(int64).data<long>().Select(v => (int)v).ToArray();
}
