using SpatialMllm.Research.Models.Vggt;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// VGGT's training objective (<c>MultitaskLoss</c> of facebookresearch/vggt <c>training/loss.py</c>) and its settings; the
/// defaults are VGGT's released configuration (camera weight 5, L1; depth weight 1 with the "grad" term and the 98 %
/// quantile filter), with the point loss (weight 1, "normal" term), which VGGT's paper trains and its released config
/// leaves off, switched on. A weight of 0 leaves that task out.
/// </summary>
public sealed record VggtLossOptions
{
    public double CameraWeight { get; init; } = 5.0;
    /// <summary>Later refinement steps of the camera head count more: step i of n has weight gamma^(n − i − 1).</summary>
    public double CameraGamma { get; init; } = 0.6;
    public double TranslationWeight { get; init; } = 1.0;
    public double RotationWeight { get; init; } = 1.0;
    public double FocalWeight { get; init; } = 0.5;
    public double DepthWeight { get; init; } = 1.0;
    public double PointWeight { get; init; } = 1.0;
    /// <summary>Weight of the confidence-weighted error: gamma·err·c − alpha·log c.</summary>
    public double ConfidenceGamma { get; init; } = 1.0;
    /// <summary>Weight of the confidence regulariser −log c.</summary>
    public double ConfidenceAlpha { get; init; } = 0.2;
    /// <summary>Per-pixel errors above this quantile are dropped (when more than 1000 remain); 0: no filter.</summary>
    public double ValidRange { get; init; } = 0.98;
    public VggtGradientTerm DepthGradient { get; init; } = VggtGradientTerm.Grad;
    public VggtGradientTerm PointGradient { get; init; } = VggtGradientTerm.Normal;
}

/// <summary>VGGT's spatial term of a regression loss (<c>gradient_loss_fn</c>).</summary>
public enum VggtGradientTerm
{
    None,
    /// <summary>"grad": L1 of the error's differences between neighbouring pixels, at 4 scales.</summary>
    Grad,
    /// <summary>"normal": 1 − cos between predicted and true surface normals (cross products of neighbours), at 3 scales.</summary>
    Normal,
}

/// <summary>The terms of <see cref="VggtLoss.Compute(IReadOnlyList{Tensor}, Tensor, Tensor, Tensor, Tensor, VggtGroundTruth, VggtLossOptions?)"/>,
/// named as VGGT logs them (<c>loss_camera</c>, <c>loss_T</c>, …); each a float32 scalar with a graph.</summary>
/// <param name="Objective">What to minimise, as VGGT sums it: CameraWeight·Camera + DepthWeight·(ConfDepth + RegDepth +
/// GradDepth) + PointWeight·(ConfPoint + RegPoint + GradPoint).</param>
public sealed record VggtLossTerms(Tensor Camera, Tensor Translation, Tensor Rotation, Tensor Focal,
    Tensor ConfDepth, Tensor RegDepth, Tensor GradDepth, Tensor ConfPoint, Tensor RegPoint, Tensor GradPoint, Tensor Objective) : IDisposable
{
    /// <summary>The terms by VGGT's names (loss_camera, loss_T, loss_R, loss_FL, loss_conf_depth, …, objective).</summary>
    public IReadOnlyList<(string Name, Tensor Value)> Named =>
    [
        ("loss_camera", Camera), ("loss_T", Translation), ("loss_R", Rotation), ("loss_FL", Focal),
        ("loss_conf_depth", ConfDepth), ("loss_reg_depth", RegDepth), ("loss_grad_depth", GradDepth),
        ("loss_conf_point", ConfPoint), ("loss_reg_point", RegPoint), ("loss_grad_point", GradPoint), ("objective", Objective),
    ];

    public void Dispose()
    {
        foreach (var (_, t) in Named) t.Dispose();
    }
}

/// <summary>
/// VGGT's training losses, written from <c>training/loss.py</c> and <c>training/train_utils/normalization.py</c> of
/// facebookresearch/vggt: the ground truth is first moved into the first camera's frame and scaled so that its valid
/// points lie at unit mean distance (<see cref="NormalizeGroundTruth"/>); then
/// <list type="bullet">
/// <item>camera: L1 between predicted and true pose encodings (translation, quaternion, field of view), per refinement
/// step, over sequences whose first frame has more than 100 valid points;</item>
/// <item>depth and point maps: the confidence-weighted error γ·‖pred − gt‖·c − α·log c and the plain error over valid
/// pixels (each without its top 2 %), plus a gradient ("grad") or surface-normal ("normal") term at several scales.</item>
/// </list>
/// Add <see cref="VggtLossTerms.Objective"/> × λ to the SFT loss, or train on it alone (ground truth from a
/// <see cref="Scenes.SyntheticScene"/>: <see cref="VggtGroundTruth.FromScene"/>).
/// </summary>
public static class VggtLoss
{
    const double HardMax = 100, FilterMinElements = 1000, NormalEps = 1e-8;

    /// <summary>The losses of one sequence's predictions (<see cref="VggtModel.forward"/>, with its
    /// <see cref="VggtPredictions.PoseEncodingIterations"/>) against <paramref name="truth"/> of batch size 1.</summary>
    public static VggtLossTerms Compute(VggtPredictions predictions, VggtGroundTruth truth, VggtLossOptions? options = null)
    {
        if (predictions.PoseEncodingIterations.Count == 0)
            throw new ArgumentException("The camera loss needs every refinement step's pose encoding: use VggtModel.forward's predictions.", nameof(predictions));
        // One sequence ([S, H, W, 1] depth) is a batch of one; B sequences ([B, S, H, W, 1]) come batched.
        Tensor Batched(Tensor t) => predictions.Depth.dim() == 5 ? t : t.unsqueeze(0);
        return Compute([.. predictions.PoseEncodingIterations.Select(Batched)], Batched(predictions.Depth),
            Batched(predictions.DepthConfidence), Batched(predictions.WorldPoints), Batched(predictions.WorldPointsConfidence), truth, options);
    }

    /// <summary>
    /// VGGT's <c>MultitaskLoss</c> on batched predictions: <paramref name="poseEncodings"/> [B, S, 9] per refinement step,
    /// <paramref name="depth"/> [B, S, H, W, 1] with <paramref name="depthConfidence"/> [B, S, H, W],
    /// <paramref name="worldPoints"/> [B, S, H, W, 3] with <paramref name="worldPointsConfidence"/> [B, S, H, W];
    /// <paramref name="truth"/> as the scene gives it (normalised here).
    /// </summary>
    public static VggtLossTerms Compute(IReadOnlyList<Tensor> poseEncodings, Tensor depth, Tensor depthConfidence, Tensor worldPoints,
        Tensor worldPointsConfidence, VggtGroundTruth truth, VggtLossOptions? options = null)
    {
        var o = options ?? new VggtLossOptions();
        truth.Check(depth, worldPoints);
        using var scope = torch.NewDisposeScope();
        var masks = truth.PointMasks.to(ScalarType.Bool, depth.device);
        var (extrinsics, points, depths) = NormalizeGroundTruth(truth.Extrinsics.to(ScalarType.Float32, depth.device),
            truth.WorldPoints.to(ScalarType.Float32, depth.device), truth.Depths.to(ScalarType.Float32, depth.device), masks);
        Tensor zero = depth.sum() * 0;
        var (camera, t, r, fl) = o.CameraWeight == 0 ? (zero, zero, zero, zero)
            : CameraLoss(poseEncodings, PoseEncodingOf(extrinsics, truth.Intrinsics.to(ScalarType.Float32, depth.device), depth.shape[2], depth.shape[3]), masks, o);
        var (confDepth, regDepth, gradDepth) = o.DepthWeight == 0 ? (zero, zero, zero)
            : MapLoss(depth, Finite(depths).unsqueeze(-1), masks, depthConfidence, o.DepthGradient, o);
        var (confPoint, regPoint, gradPoint) = o.PointWeight == 0 ? (zero, zero, zero)
            : MapLoss(worldPoints, Finite(points), masks, worldPointsConfidence, o.PointGradient, o);
        var objective = camera * o.CameraWeight + (confDepth + regDepth + gradDepth) * o.DepthWeight + (confPoint + regPoint + gradPoint) * o.PointWeight;
        Tensor[] all = [camera, t, r, fl, confDepth, regDepth, gradDepth, confPoint, regPoint, gradPoint, objective];
        var kept = all.Select(x => x.to(ScalarType.Float32).MoveToOuterDisposeScope()).ToArray();
        return new VggtLossTerms(kept[0], kept[1], kept[2], kept[3], kept[4], kept[5], kept[6], kept[7], kept[8], kept[9], kept[10]);
    }

    /// <summary>
    /// VGGT's <c>normalize_camera_extrinsics_and_points_batch</c>: extrinsics [B, S, 3, 4] (world → camera) relative to
    /// each sequence's first camera, and world points [B, S, H, W, 3] in that camera's frame, both (and the depths
    /// [B, S, H, W]) divided by the mean distance of the valid points (<paramref name="masks"/> [B, S, H, W]) from it.
    /// </summary>
    public static (Tensor Extrinsics, Tensor WorldPoints, Tensor Depths) NormalizeGroundTruth(Tensor extrinsics, Tensor worldPoints, Tensor depths, Tensor masks)
    {
        using var scope = torch.NewDisposeScope();
        long b = extrinsics.shape[0], s = extrinsics.shape[1];
        var bottom = torch.tensor(new float[] { 0, 0, 0, 1 }, dtype: extrinsics.dtype, device: extrinsics.device).view(1, 1, 1, 4);
        var homogeneous = torch.cat([extrinsics, bottom.expand(b, s, 1, 4)], dim: -2);                       // [B, S, 4, 4]
        var r0 = extrinsics[.., 0, .., ..3];                                                                // [B, 3, 3]
        var t0 = extrinsics[.., 0, .., 3];                                                                  // [B, 3]
        var r0T = r0.transpose(1, 2);
        var firstInverse = torch.cat([torch.cat([r0T, -torch.bmm(r0T, t0.unsqueeze(-1))], dim: -1), bottom[0].expand(b, 1, 4)], dim: 1);
        var relative = homogeneous.matmul(firstInverse.unsqueeze(1))[.., .., ..3];                            // [B, S, 3, 4]
        var points = worldPoints.matmul(r0T.unsqueeze(1).unsqueeze(2)) + t0.unsqueeze(1).unsqueeze(2).unsqueeze(3);
        var weights = masks.to(points.dtype);
        var scale = ((points.norm(-1) * weights).sum([1, 2, 3]) / (weights.sum([1, 2, 3]) + 1e-3)).clamp(1e-6, 1e6);   // [B]
        var normalized = torch.cat([relative[.., .., .., ..3], relative[.., .., .., 3..] / scale.view(-1, 1, 1, 1)], dim: -1);
        return (Finite(normalized, null).MoveToOuterDisposeScope(), Finite(points / scale.view(-1, 1, 1, 1, 1), null).MoveToOuterDisposeScope(),
            Finite(depths / scale.view(-1, 1, 1, 1), null).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// VGGT's <c>extri_intri_to_pose_encoding</c> ("absT_quaR_FoV"): extrinsics [.., 3, 4] and intrinsics [.., 3, 3] of
    /// images <paramref name="height"/> × <paramref name="width"/> → [.., 9] = translation, quaternion (x, y, z, w; w ≥ 0),
    /// vertical and horizontal field of view.
    /// </summary>
    public static Tensor PoseEncodingOf(Tensor extrinsics, Tensor intrinsics, long height, long width)
    {
        using var scope = torch.NewDisposeScope();
        var quaternion = MatrixToQuaternion(extrinsics[TensorIndex.Ellipsis, ..3, ..3]);
        var fovH = 2 * torch.atan(height / 2.0 / intrinsics[TensorIndex.Ellipsis, 1, 1]);
        var fovW = 2 * torch.atan(width / 2.0 / intrinsics[TensorIndex.Ellipsis, 0, 0]);
        return torch.cat([extrinsics[TensorIndex.Ellipsis, ..3, 3], quaternion, fovH.unsqueeze(-1), fovW.unsqueeze(-1)], dim: -1)
            .to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>VGGT's <c>mat_to_quat</c> (PyTorch3D's): rotations [.., 3, 3] → quaternions [.., 4], real part last and
    /// non-negative, from the best-conditioned of the four candidate formulas.</summary>
    public static Tensor MatrixToQuaternion(Tensor rotations)
    {
        using var scope = torch.NewDisposeScope();
        var m = rotations.reshape([.. rotations.shape[..^2], 9]).unbind(-1);
        Tensor m00 = m[0], m01 = m[1], m02 = m[2], m10 = m[3], m11 = m[4], m12 = m[5], m20 = m[6], m21 = m[7], m22 = m[8];
        var squares = torch.stack([1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22], dim: -1);
        var qAbs = torch.where(squares > 0, squares.clamp_min(0).sqrt(), torch.zeros_like(squares));
        var byRijk = torch.stack(
        [
            torch.stack([qAbs.select(-1, 0).square(), m21 - m12, m02 - m20, m10 - m01], dim: -1),
            torch.stack([m21 - m12, qAbs.select(-1, 1).square(), m10 + m01, m02 + m20], dim: -1),
            torch.stack([m02 - m20, m10 + m01, qAbs.select(-1, 2).square(), m12 + m21], dim: -1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, qAbs.select(-1, 3).square()], dim: -1),
        ], dim: -2);
        var candidates = byRijk / (2.0 * qAbs.unsqueeze(-1).clamp_min(0.1));
        var best = qAbs.argmax(-1).unsqueeze(-1).unsqueeze(-1).expand([.. qAbs.shape[..^1], 1, 4]);
        var rijk = candidates.gather(-2, best).squeeze(-2);
        var ijkr = torch.cat([rijk[TensorIndex.Ellipsis, 1..], rijk[TensorIndex.Ellipsis, ..1]], dim: -1);
        return torch.where(ijkr[TensorIndex.Ellipsis, 3..] < 0, -ijkr, ijkr).MoveToOuterDisposeScope();
    }

    static (Tensor Camera, Tensor T, Tensor R, Tensor FL) CameraLoss(IReadOnlyList<Tensor> poseEncodings, Tensor truth, Tensor masks, VggtLossOptions o)
    {
        if (poseEncodings.Count == 0) throw new ArgumentException("The camera loss needs at least one pose encoding.", nameof(poseEncodings));
        // Sequences whose first frame has more than 100 valid points.
        var valid = (masks[.., 0].sum([-1, -2]) > 100).nonzero().squeeze(1);
        int n = poseEncodings.Count;
        Tensor t = poseEncodings[0].sum() * 0, r = t, fl = t;
        for (int i = 0; i < n; i++)
        {
            double weight = Math.Pow(o.CameraGamma, n - i - 1);
            var prediction = poseEncodings[i];
            if (valid.numel() == 0)
            {
                var nothing = (prediction * 0).mean();
                (t, r, fl) = (t + nothing * weight, r + nothing * weight, fl + nothing * weight);
                continue;
            }
            var p = prediction.index_select(0, valid);
            var e = truth.to(p.dtype).index_select(0, valid);
            var error = (p - e).abs();
            t = t + Finite(error[TensorIndex.Ellipsis, ..3]).clamp_max(100).mean() * weight;
            r = r + Finite(error[TensorIndex.Ellipsis, 3..7]).mean() * weight;
            fl = fl + Finite(error[TensorIndex.Ellipsis, 7..]).mean() * weight;
        }
        (t, r, fl) = (t / n, r / n, fl / n);
        return (t * o.TranslationWeight + r * o.RotationWeight + fl * o.FocalWeight, t, r, fl);
    }

    /// <summary>compute_depth_loss / compute_point_loss → regression_loss: (conf, reg, grad) terms.</summary>
    static (Tensor Conf, Tensor Reg, Tensor Grad) MapLoss(Tensor prediction, Tensor truth, Tensor masks, Tensor confidence, VggtGradientTerm term, VggtLossOptions o)
    {
        if (masks.sum().item<long>() < 100)
        {
            var nothing = (prediction * 0).mean();
            return (nothing, nothing, nothing);
        }
        long b = prediction.shape[0], s = prediction.shape[1], h = prediction.shape[2], w = prediction.shape[3], c = prediction.shape[4];
        var index = masks.reshape(-1).nonzero().squeeze(1);
        var reg = Finite((truth.reshape(-1, c).index_select(0, index) - prediction.reshape(-1, c).index_select(0, index)).norm(-1));
        var validConfidence = confidence.reshape(-1).index_select(0, index);
        var conf = Finite(reg * validConfidence * o.ConfidenceGamma - validConfidence.log() * o.ConfidenceAlpha);
        var (p, g, m) = (prediction.reshape(b * s, h, w, c), truth.reshape(b * s, h, w, c), masks.reshape(b * s, h, w));
        var grad = term switch
        {
            VggtGradientTerm.Grad => MultiScale(GradientTerm, p, g, m, 4),
            VggtGradientTerm.Normal => MultiScale(NormalTerm, p, g, m, 3),
            _ => prediction.sum() * 0,
        };
        if (conf.numel() == 0) return ((prediction * 0).mean(), (prediction * 0).mean(), grad);
        return (Finite(QuantileFilter(conf, o.ValidRange)).mean(), Finite(QuantileFilter(reg, o.ValidRange)).mean(), grad);
    }

    static Tensor MultiScale(Func<Tensor, Tensor, Tensor, Tensor> term, Tensor prediction, Tensor truth, Tensor masks, int scales)
    {
        Tensor total = prediction.sum() * 0;
        for (int scale = 0; scale < scales; scale++)
        {
            long step = 1L << scale;
            Tensor Sub(Tensor x) => x.slice(1, 0, x.shape[1], step).slice(2, 0, x.shape[2], step);
            total = total + term(Sub(prediction), Sub(truth), Sub(masks));
        }
        return total / scales;
    }

    /// <summary>gradient_loss without confidence: L1 of the masked error's horizontal and vertical differences.</summary>
    static Tensor GradientTerm(Tensor prediction, Tensor truth, Tensor masks)
    {
        var mask = masks.unsqueeze(-1).expand(-1, -1, -1, prediction.shape[^1]).to(prediction.dtype);
        var diff = (prediction - truth) * mask;
        var gx = ((diff[.., .., 1..] - diff[.., .., ..^1]).abs() * (mask[.., .., 1..] * mask[.., .., ..^1])).clamp_max(100);
        var gy = ((diff[.., 1..] - diff[.., ..^1]).abs() * (mask[.., 1..] * mask[.., ..^1])).clamp_max(100);
        var divisor = mask.sum();
        return divisor.item<float>() == 0 ? prediction.sum() * 0 : (gx.sum() + gy.sum()) / divisor;
    }

    /// <summary>normal_loss without confidence: 1 − cos between predicted and true normals where both are defined.</summary>
    static Tensor NormalTerm(Tensor prediction, Tensor truth, Tensor masks)
    {
        var (predicted, valid) = Normals(prediction, masks);
        var (expected, _) = Normals(truth, masks);   // same mask: the same validity
        var index = valid.reshape(-1).nonzero().squeeze(1);
        if (index.numel() < 10) return prediction.sum() * 0;
        var dot = (predicted.reshape(-1, 3).index_select(0, index) * expected.reshape(-1, 3).index_select(0, index)).sum(-1)
            .clamp(-1 + NormalEps, 1 - NormalEps);
        return Finite(1 - dot).mean();
    }

    /// <summary>point_map_to_normal: four normals per pixel (cross products of the up/left/down/right neighbours'
    /// offsets) [4, B, H, W, 3], and where each is defined (all three pixels valid) [4, B, H, W].</summary>
    static (Tensor Normals, Tensor Valid) Normals(Tensor points, Tensor masks)
    {
        var padded = nn.functional.pad(masks.to(ScalarType.Float32), [1, 1, 1, 1]) > 0.5;
        var pts = nn.functional.pad(points.permute(0, 3, 1, 2), [1, 1, 1, 1]).permute(0, 2, 3, 1);
        var centre = pts[.., 1..^1, 1..^1];
        var up = pts[.., ..^2, 1..^1] - centre;
        var left = pts[.., 1..^1, ..^2] - centre;
        var down = pts[.., 2.., 1..^1] - centre;
        var right = pts[.., 1..^1, 2..] - centre;
        var normals = torch.stack([torch.linalg.cross(up, left), torch.linalg.cross(left, down), torch.linalg.cross(down, right), torch.linalg.cross(right, up)]);
        Tensor mc = padded[.., 1..^1, 1..^1], mu = padded[.., ..^2, 1..^1], ml = padded[.., 1..^1, ..^2], md = padded[.., 2.., 1..^1], mr = padded[.., 1..^1, 2..];
        var valid = torch.stack([mu.logical_and(mc).logical_and(ml), ml.logical_and(mc).logical_and(md), md.logical_and(mc).logical_and(mr), mr.logical_and(mc).logical_and(mu)]);
        return (nn.functional.normalize(normals, p: 2, dim: -1, eps: NormalEps), valid);
    }

    /// <summary>filter_by_quantile: with more than 1000 values, clamp at 100 and keep those below the
    /// <paramref name="quantile"/> (nearest rank) when more than 1000 remain.</summary>
    static Tensor QuantileFilter(Tensor values, double quantile)
    {
        if (quantile <= 0 || values.numel() <= FilterMinElements) return values;
        var clamped = values.clamp_max(HardMax);
        long k = (long)Math.Round(quantile * (clamped.numel() - 1), MidpointRounding.ToEven) + 1;   // Python's round
        var (sorted, _) = clamped.detach().reshape(-1).sort();
        var threshold = sorted[k - 1].clamp_max(HardMax);
        var keep = clamped < threshold;
        return keep.sum().item<long>() > FilterMinElements ? clamped.masked_select(keep) : clamped;
    }

    /// <summary>check_and_fix_inf_nan: inf and nan become 0, then values are clamped to ±<paramref name="hardMax"/>.</summary>
    static Tensor Finite(Tensor x, double? hardMax = HardMax)
    {
        var fixedValues = torch.where(x.isfinite(), x, torch.zeros_like(x));
        return hardMax is double max ? fixedValues.clamp(-max, max) : fixedValues;
    }
}
