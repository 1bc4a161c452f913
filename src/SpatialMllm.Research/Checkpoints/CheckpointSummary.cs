using System.Text;

namespace SpatialMllm.Research.Checkpoints;

/// <summary>A human-readable summary of a checkpoint: config and parameter counts per component.</summary>
public static class CheckpointSummary
{
    /// <summary>Components by key prefix, in the order the model runs them.</summary>
    static readonly (string Prefix, string Name)[] Components =
    [
        ("visual.", "vision tower (Qwen2.5-VL)"),
        ("spatial_encoder.vggt_model.aggregator.", "VGGT aggregator"),
        ("spatial_encoder.vggt_model.camera_head.", "VGGT camera head"),
        ("spatial_encoder.vggt_model.depth_head.", "VGGT depth head"),
        ("spatial_encoder.vggt_model.point_head.", "VGGT point head"),
        ("spatial_encoder.vggt_model.track_head.", "VGGT track head (not run)"),
        ("connector.", "connector"),
        ("model.", "decoder (Qwen2.5)"),
        ("lm_head.", "lm_head"),
    ];

    internal static string Describe(Checkpoint checkpoint)
    {
        var c = checkpoint.Config;
        var sb = new StringBuilder();
        sb.AppendLine($"{checkpoint.Folder}: {c.ModelType} ({(c.IsSpatialMllm ? "Spatial-MLLM" : "plain Qwen2.5-VL")})");
        sb.AppendLine($"  decoder: {c.Text.NumHiddenLayers} layers, hidden {c.Text.HiddenSize}, heads {c.Text.NumAttentionHeads}/{c.Text.NumKeyValueHeads} kv, vocab {c.Text.VocabSize}, mrope [{string.Join(",", c.Text.MropeSection)}], tied lm_head: {c.Text.TieWordEmbeddings}");
        sb.AppendLine($"  vision:  {c.Vision.Depth} blocks, hidden {c.Vision.HiddenSize}, heads {c.Vision.NumHeads}, window {c.Vision.WindowSize}px, full attention at [{string.Join(",", c.Vision.FullAttentionBlockIndexes)}] → {c.Vision.OutHiddenSize}");
        if (c.Spatial is { } s)
            sb.AppendLine($"  VGGT:    {s.Depth} frame/global pairs, dim {s.EmbedDim}, heads {s.NumHeads}, DINOv2 patch embed {s.PatchEmbed.Depth} blocks; connector {c.Connector?.ConnectorType} at layer {c.Connector?.SpatialEmbedsLayerIdx}");
        sb.AppendLine($"  {"component",-30} {"tensors",8} {"parameters",15}  dtypes");
        long total = 0;
        var counted = new HashSet<string>();
        foreach (var (prefix, name) in Components)
        {
            var keys = checkpoint.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            if (keys.Count == 0) continue;
            var entries = keys.Select(checkpoint.Entry).ToList();
            long parameters = entries.Sum(e => e.ElementCount);
            total += parameters;
            counted.UnionWith(keys);
            sb.AppendLine($"  {name,-30} {keys.Count,8} {parameters,15:N0}  {string.Join(",", entries.Select(e => e.DType).Distinct())}");
        }
        var other = checkpoint.Keys.Where(k => !counted.Contains(k)).ToList();
        if (other.Count > 0) sb.AppendLine($"  {"other",-30} {other.Count,8} {other.Sum(k => checkpoint.Entry(k).ElementCount),15:N0}  e.g. {other[0]}");
        sb.AppendLine($"  {"total",-30} {checkpoint.Keys.Count,8} {total,15:N0}");
        return sb.ToString();
    }
}
