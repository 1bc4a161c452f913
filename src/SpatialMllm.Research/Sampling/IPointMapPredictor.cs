using SpatialMllm.Research.Video;
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

    /// <summary>
    /// The point maps of frames <paramref name="frames"/> of <paramref name="video"/>: by default decoded, preprocessed
    /// for VGGT and passed to <see cref="Predict"/>; a source that knows the geometry by frame number (a synthetic
    /// scene's ground truth) answers directly.
    /// </summary>
    (Tensor WorldPoints, Tensor Confidence) PredictFrames(VideoSource video, IReadOnlyList<int> frames) =>
        Predict(CandidateFrames.Decode(video, frames, f => VggtSamplingPreprocessor.Preprocess(f)));
}
