namespace SpatialMllm.Research.Checkpoints;

/// <summary>
/// A module that keeps an inference-only fused copy of some of its weights (e.g. q/k/v concatenated for one GEMM),
/// outside its parameters so the checkpoint keys stay as they are. Checkpoint loading calls
/// <see cref="InvalidateFusedWeights"/> so the copy is rebuilt from the loaded weights.
/// </summary>
internal interface IFusedWeights
{
    void InvalidateFusedWeights();
}
