namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// Spatial-MLLM's <c>spatial_encoder</c> (the reference's <c>VGGTSpatialEncoderPreTrainedModel</c>): it holds the VGGT
/// model at <c>vggt_model</c>, so <c>model.spatial_encoder.vggt_model.aggregator.global_blocks[3]</c> is the module whose
/// checkpoint keys start <c>spatial_encoder.vggt_model.aggregator.global_blocks.3.</c>.
/// </summary>
public sealed class VggtSpatialEncoder(VggtModel vggtModel)
{
    public VggtModel vggt_model { get; } = vggtModel;
}
