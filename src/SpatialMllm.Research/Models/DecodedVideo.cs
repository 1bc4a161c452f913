using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Sampling;

namespace SpatialMllm.Research.Models;

/// <summary>
/// A video decoded and preprocessed on the CPU, ready for the encoders: the first half of
/// <see cref="SpatialMllmModel.EncodeVideo"/>, made by <see cref="SpatialMllmModel.DecodeVideo"/> (which a pipeline can run
/// ahead on worker threads) and consumed by <see cref="SpatialMllmModel.EncodeDecoded"/>. Owns the processor's tensors
/// (~120 MB at 16 frames of 476×644): dispose it once encoded.
/// </summary>
/// <param name="Path">The video file or frame folder.</param>
/// <param name="Selection">The frames the sampler chose.</param>
/// <param name="Inputs">The processor's outputs for those frames, on the CPU.</param>
/// <param name="Timings">"decode frames" (open, choose frames, decode) and "preprocess" (resize, patches), wall-clock on the
/// thread that decoded.</param>
public sealed record DecodedVideo(string Path, FrameSelection Selection, QwenVideoInputs Inputs, IReadOnlyList<StageTiming> Timings) : IDisposable
{
    public void Dispose() => Inputs.Dispose();
}
