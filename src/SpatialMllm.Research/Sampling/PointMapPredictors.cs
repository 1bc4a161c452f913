namespace SpatialMllm.Research.Sampling;

/// <summary>Where space-aware sampling gets its VGGT from.</summary>
internal static class PointMapPredictors
{
    /// <summary>
    /// SEAM (lead): return the VGGT model of <paramref name="modelDir"/> (a Spatial-MLLM checkpoint's
    /// <c>spatial_encoder.vggt_model.*</c> or a VGGT-1B folder) with its point head, as an
    /// <see cref="IPointMapPredictor"/>. Everything downstream (the sampler, its cache, the CLI's
    /// <c>--sampler space-aware --model DIR</c>) already goes through this one method. If the returned object
    /// is <see cref="IDisposable"/>, the sampler that loaded it disposes it.
    /// </summary>
    public static IPointMapPredictor FromModelFolder(string modelDir) =>
        throw new NotSupportedException(
            $"space-aware sampling needs the VGGT point-map predictor, which is not connected yet " +
            $"(SpatialMllm.Research.Sampling.PointMapPredictors.FromModelFolder; model folder '{modelDir}')");
}
