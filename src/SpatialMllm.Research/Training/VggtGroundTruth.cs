using SpatialMllm.Research.Scenes;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// Geometry ground truth for <see cref="VggtLoss"/>, as VGGT's training batches carry it (before normalisation), for
/// B sequences of S frames of H × W pixels. Dispose to free the tensors.
/// </summary>
/// <param name="Extrinsics">[B, S, 3, 4] world → camera [R | t] (OpenCV: x right, y down, z forward).</param>
/// <param name="Intrinsics">[B, S, 3, 3] pinhole K in pixels.</param>
/// <param name="Depths">[B, S, H, W] depth along the camera's z axis.</param>
/// <param name="WorldPoints">[B, S, H, W, 3] the world point each pixel sees.</param>
/// <param name="PointMasks">[B, S, H, W] bool: pixels with valid geometry.</param>
public sealed record VggtGroundTruth(Tensor Extrinsics, Tensor Intrinsics, Tensor Depths, Tensor WorldPoints, Tensor PointMasks) : IDisposable
{
    /// <summary>
    /// Renders <paramref name="frames"/> of <paramref name="scene"/> (the first is the reference camera) and returns VGGT's
    /// input, images [S, 3, H, W] in [0, 1], with their exact geometry (batch of one). Frames whose sides are not
    /// multiples of <paramref name="patchSize"/> are cropped about the centre to the largest that are (the principal
    /// point moves with the crop), so VGGT can take them.
    /// </summary>
    public static (Tensor Images, VggtGroundTruth Truth) FromScene(SyntheticScene scene, IReadOnlyList<int> frames, int patchSize = 14)
    {
        if (frames.Count < 1) throw new ArgumentException("Give at least one frame.", nameof(frames));
        var o = scene.Options;
        int height = o.Height / patchSize * patchSize, width = o.Width / patchSize * patchSize;
        if (height == 0 || width == 0)
            throw new ArgumentException($"{scene}: frames of {o.Width}×{o.Height} are smaller than one {patchSize}-pixel patch.", nameof(scene));
        int top = (o.Height - height) / 2, left = (o.Width - width) / 2;
        using var scope = torch.NewDisposeScope();
        using var rendered = scene.Render(frames);
        var rows = TensorIndex.Slice(top, top + height);
        var cols = TensorIndex.Slice(left, left + width);
        var images = rendered.Rgb[.., .., rows, cols].to(ScalarType.Float32) / 255.0;
        var depths = rendered.Depth[.., rows, cols];
        var points = rendered.WorldPoints[.., rows, cols];
        var masks = depths.isfinite().logical_and(depths > 0);
        var k = scene.Intrinsics;
        var intrinsics = torch.tensor(new double[] { k.Fx, 0, k.Cx - left, 0, k.Fy, k.Cy - top, 0, 0, 1 }, [3, 3]).expand(frames.Count, 3, 3);
        var extrinsics = torch.stack(frames.Select(f => scene.Poses[f].Extrinsic()).ToList());
        var truth = new VggtGroundTruth(
            extrinsics.to(ScalarType.Float32).unsqueeze(0).MoveToOuterDisposeScope(), intrinsics.to(ScalarType.Float32).unsqueeze(0).MoveToOuterDisposeScope(),
            depths.unsqueeze(0).contiguous().MoveToOuterDisposeScope(), points.unsqueeze(0).contiguous().MoveToOuterDisposeScope(),
            masks.unsqueeze(0).MoveToOuterDisposeScope());
        return (images.contiguous().MoveToOuterDisposeScope(), truth);
    }

    /// <summary>The sequences of several ground truths as one batch (each of one size), in order.</summary>
    public static VggtGroundTruth Concat(IReadOnlyList<VggtGroundTruth> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("Give at least one ground truth.", nameof(parts));
        Tensor Cat(Func<VggtGroundTruth, Tensor> field) => torch.cat(parts.Select(field).ToArray());
        return new VggtGroundTruth(Cat(t => t.Extrinsics), Cat(t => t.Intrinsics), Cat(t => t.Depths), Cat(t => t.WorldPoints), Cat(t => t.PointMasks));
    }

    /// <summary>Throws, naming the shapes, unless the predictions [B, S, H, W, 1] and [B, S, H, W, 3] match this truth.</summary>
    internal void Check(Tensor depth, Tensor worldPoints)
    {
        long[] maps = PointMasks.shape;
        bool ok = maps.Length == 4 && depth.dim() == 5 && depth.shape[..4].SequenceEqual(maps) && depth.shape[4] == 1
                  && worldPoints.dim() == 5 && worldPoints.shape[..4].SequenceEqual(maps) && worldPoints.shape[4] == 3
                  && Extrinsics.shape.SequenceEqual([maps[0], maps[1], 3, 4]) && Intrinsics.shape.SequenceEqual([maps[0], maps[1], 3, 3])
                  && Depths.shape.SequenceEqual(maps) && WorldPoints.shape.SequenceEqual([.. maps, 3]);
        if (!ok)
            throw new ArgumentException(
                $"VGGT's losses need predictions and ground truth of one size: depth [{string.Join(", ", depth.shape)}] and world points " +
                $"[{string.Join(", ", worldPoints.shape)}] against masks [{string.Join(", ", maps)}], depths [{string.Join(", ", Depths.shape)}], " +
                $"world points [{string.Join(", ", WorldPoints.shape)}], extrinsics [{string.Join(", ", Extrinsics.shape)}], intrinsics [{string.Join(", ", Intrinsics.shape)}].");
    }

    public void Dispose()
    {
        Extrinsics.Dispose();
        Intrinsics.Dispose();
        Depths.Dispose();
        WorldPoints.Dispose();
        PointMasks.Dispose();
    }
}
