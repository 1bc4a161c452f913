using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Scenes;

/// <summary>
/// A pinhole camera, OpenCV convention: pixel (row v, column u) is centred at (u, v); <c>u = Fx·x/z + Cx</c>,
/// <c>v = Fy·y/z + Cy</c> for a camera point (x right, y down, z forward).
/// </summary>
public sealed record CameraIntrinsics(int Width, int Height, double Fx, double Fy, double Cx, double Cy)
{
    /// <summary>A centred camera of horizontal field of view <paramref name="horizontalFovDegrees"/> with square pixels.</summary>
    public static CameraIntrinsics FromFieldOfView(int width, int height, double horizontalFovDegrees)
    {
        double f = width / 2.0 / Math.Tan(horizontalFovDegrees * Math.PI / 360);
        return new CameraIntrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0);
    }

    /// <summary>K as float64 [3,3].</summary>
    public Tensor ToTensor() => torch.tensor(new[] { Fx, 0, Cx, 0, Fy, Cy, 0, 0, 1 }, [3, 3], float64);
}

/// <summary>
/// Where the camera is in one frame. <see cref="CameraToWorld"/>'s columns are the camera's right, down and forward
/// axes in world coordinates; a world point p is at camera point <c>Rᵀ(p − Position)</c>.
/// </summary>
/// <param name="Position">Camera centre in world coordinates (metres).</param>
/// <param name="CameraToWorld">Row-major 3×3 rotation R.</param>
/// <param name="Yaw">Heading of the forward axis, radians counter-clockwise from +x seen from above.</param>
/// <param name="Pitch">Forward axis above the horizontal, radians (negative: looking down).</param>
public sealed record CameraPose((double X, double Y, double Z) Position, double[] CameraToWorld, double Yaw, double Pitch)
{
    public static CameraPose Looking((double X, double Y, double Z) position, double yaw, double pitch)
    {
        (double cy, double sy, double cp, double sp) = (Math.Cos(yaw), Math.Sin(yaw), Math.Cos(pitch), Math.Sin(pitch));
        double[] forward = [cp * cy, cp * sy, sp];
        double[] right = [sy, -cy, 0];                 // forward × up, normalised (forward is never vertical here)
        double[] down = [forward[1] * right[2] - forward[2] * right[1],   // forward × right
                         forward[2] * right[0] - forward[0] * right[2],
                         forward[0] * right[1] - forward[1] * right[0]];
        return new CameraPose(position,
            [right[0], down[0], forward[0], right[1], down[1], forward[1], right[2], down[2], forward[2]], yaw, pitch);
    }

    public (double X, double Y, double Z) Forward => (CameraToWorld[2], CameraToWorld[5], CameraToWorld[8]);

    /// <summary>World-to-camera extrinsic [R | t] (VGGT's and OpenCV's convention), float64 [3,4].</summary>
    public Tensor Extrinsic()
    {
        double[] r = CameraToWorld;
        var (x, y, z) = Position;
        // Rᵀ and −Rᵀ·C
        double[] e = new double[12];
        for (int row = 0; row < 3; row++)
        {
            for (int col = 0; col < 3; col++) e[row * 4 + col] = r[col * 3 + row];
            e[row * 4 + 3] = -(r[0 * 3 + row] * x + r[1 * 3 + row] * y + r[2 * 3 + row] * z);
        }
        return torch.tensor(e, [3, 4], float64);
    }

    /// <summary>Camera-to-world pose [R | C] as float64 [4,4].</summary>
    public Tensor CameraToWorldMatrix()
    {
        double[] r = CameraToWorld;
        var (x, y, z) = Position;
        return torch.tensor(new[] { r[0], r[1], r[2], x, r[3], r[4], r[5], y, r[6], r[7], r[8], z, 0, 0, 0, 1 }, [4, 4], float64);
    }
}
