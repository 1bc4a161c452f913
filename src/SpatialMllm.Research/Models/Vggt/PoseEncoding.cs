using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// VGGT's <c>absT_quaR_FoV</c> camera encoding [..., 9] = [translation (3), quaternion (x, y, z, w: real part
/// last) (4), vertical field of view, horizontal field of view] (radians).
/// </summary>
public static class PoseEncoding
{
    /// <summary>
    /// Converts pose encodings [..., 9] to extrinsics [..., 3, 4] = [R | t] (camera from world, OpenCV
    /// convention) and pinhole intrinsics [..., 3, 3] for an image of <paramref name="imageHeight"/> ×
    /// <paramref name="imageWidth"/> pixels with the principal point at the image centre.
    /// </summary>
    public static (Tensor Extrinsics, Tensor Intrinsics) ToExtrinsicsIntrinsics(Tensor poseEncoding, long imageHeight, long imageWidth)
    {
        if (poseEncoding.shape[^1] != 9)
            throw new ArgumentException($"A pose encoding has 9 values in its last dimension, got [{string.Join(", ", poseEncoding.shape)}].");
        using var scope = torch.NewDisposeScope();
        var translation = poseEncoding[TensorIndex.Ellipsis, ..3];
        var rotation = QuaternionToMatrix(poseEncoding[TensorIndex.Ellipsis, 3..7]);
        var extrinsics = torch.cat([rotation, translation.unsqueeze(-1)], dim: -1);

        var fovH = poseEncoding[TensorIndex.Ellipsis, 7];
        var fovW = poseEncoding[TensorIndex.Ellipsis, 8];
        var fy = (imageHeight / 2.0) / torch.tan(fovH / 2.0);
        var fx = (imageWidth / 2.0) / torch.tan(fovW / 2.0);
        var zeros = torch.zeros_like(fx);
        var ones = torch.ones_like(fx);
        var cx = torch.full_like(fx, imageWidth / 2.0);
        var cy = torch.full_like(fx, imageHeight / 2.0);
        var intrinsics = torch.stack([fx, zeros, cx, zeros, fy, cy, zeros, zeros, ones], dim: -1)
            .reshape([.. fx.shape, 3, 3]);
        return (extrinsics.MoveToOuterDisposeScope(), intrinsics.MoveToOuterDisposeScope());
    }

    /// <summary>Quaternions [..., 4] (x, y, z, w; need not be unit length) → rotation matrices [..., 3, 3].</summary>
    public static Tensor QuaternionToMatrix(Tensor quaternions)
    {
        using var scope = torch.NewDisposeScope();
        var q = quaternions.unbind(-1);
        Tensor i = q[0], j = q[1], k = q[2], r = q[3];
        var twoS = 2.0 / (quaternions * quaternions).sum(-1);
        var m = torch.stack(
        [
            1 - twoS * (j * j + k * k), twoS * (i * j - k * r), twoS * (i * k + j * r),
            twoS * (i * j + k * r), 1 - twoS * (i * i + k * k), twoS * (j * k - i * r),
            twoS * (i * k - j * r), twoS * (j * k + i * r), 1 - twoS * (i * i + j * j),
        ], dim: -1);
        return m.reshape([.. quaternions.shape[..^1], 3, 3]).MoveToOuterDisposeScope();
    }
}
