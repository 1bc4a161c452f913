using SpatialMllm.Research.Models.Vggt;

namespace SpatialMllm.Research.Sampling;

/// <summary>Where space-aware sampling gets its VGGT from.</summary>
internal static class PointMapPredictors
{
    /// <summary>VGGT with its point head from a Spatial-MLLM checkpoint or a VGGT-1B folder; the sampler that
    /// loaded it disposes it.</summary>
    public static IPointMapPredictor FromModelFolder(string modelDir) => VggtLoader.PointMapPredictor(modelDir);
}
