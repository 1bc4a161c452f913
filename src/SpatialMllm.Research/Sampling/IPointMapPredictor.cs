using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// What space-aware sampling needs from VGGT: its point head on all frames as one sequence (frame 0 is the
/// reference). Input: float [S,3,H,W] in [0,1] as <see cref="VggtSamplingPreprocessor"/> makes them.
/// Output: world points [S,H,W,3] and their confidences [S,H,W] (the batch dimension dropped). The
/// implementation chooses device and dtype (the reference runs bf16 autocast on GPU).
/// </summary>
internal interface IPointMapPredictor
{
    (Tensor WorldPoints, Tensor Confidence) Predict(Tensor framesSx3xHxW01);
}
