using static TorchSharp.torch;

namespace SpatialMllm.Research.Scenes;

/// <summary>Rendered frames of a <see cref="SyntheticScene"/> with their exact geometry. Dispose to free the tensors.</summary>
/// <param name="Frames">The frame numbers rendered, in the order of the tensors' first axis.</param>
/// <param name="Rgb">uint8 [T,3,H,W], what a video of the scene holds.</param>
/// <param name="Depth">float32 [T,H,W]: metres along the camera's forward axis (z in camera coordinates).</param>
/// <param name="WorldPoints">float32 [T,H,W,3]: the world point each pixel sees (metres, z up).</param>
/// <param name="SurfaceIds">int32 [T,H,W]: the object id (≥ 0, see <see cref="SyntheticScene.Objects"/>) or a room surface
/// (<see cref="SyntheticScene.FloorId"/>, <see cref="SyntheticScene.CeilingId"/>, <see cref="SyntheticScene.SouthWallId"/> …).</param>
public sealed record SceneFrames(IReadOnlyList<int> Frames, Tensor Rgb, Tensor Depth, Tensor WorldPoints, Tensor SurfaceIds) : IDisposable
{
    public void Dispose()
    {
        Rgb.Dispose();
        Depth.Dispose();
        WorldPoints.Dispose();
        SurfaceIds.Dispose();
    }
}
