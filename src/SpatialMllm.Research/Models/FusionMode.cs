
namespace SpatialMllm.Research.Models;

/// <summary>Which visual tokens replace the <c>&lt;|video_pad|&gt;</c> embeddings (the paper's encoder ablations).</summary>
public enum FusionMode
{
    /// <summary>Qwen vision tokens + connector(VGGT): the Spatial-MLLM model.</summary>
    Full,
    /// <summary>Qwen vision tokens only; VGGT and the connector are not run ("2D only").</summary>
    VisionOnly,
    /// <summary>connector(VGGT) only; the Qwen vision tokens are zeroed ("spatial only").</summary>
    SpatialOnly,
}
