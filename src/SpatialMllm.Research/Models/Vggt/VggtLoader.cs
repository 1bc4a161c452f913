using SpatialMllm.Research.Modules;
using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>Loads VGGT (with its heads) from a Spatial-MLLM checkpoint or a facebook/VGGT-1B folder.</summary>
internal static class VggtLoader
{
    /// <summary>
    /// A Spatial-MLLM folder (config.json with <c>vision_config</c>; keys under <c>spatial_encoder.vggt_model.</c>) or a
    /// VGGT-1B folder (config.json with img_size/patch_size/embed_dim; keys without prefix).
    /// </summary>
    public static VggtModel Load(string folder, Device device, ScalarType dtype = ScalarType.Float32)
    {
        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath)) throw new CheckpointFormatException($"{configPath}: file not found.");
        SpatialEncoderConfig spatial;
        string prefix;
        using (var doc = ParseJson(configPath))
        {
            if (doc.RootElement.TryGetProperty("vision_config", out _))
            {
                spatial = ConfigFile.Load(configPath).Spatial
                    ?? throw new CheckpointFormatException($"{configPath}: a plain Qwen2.5-VL checkpoint has no VGGT (no spatial_config).");
                prefix = VggtModel.CheckpointPrefix;
            }
            else
            {
                spatial = SpatialMllmConfig.ParseSpatial(doc.RootElement);
                prefix = "";
            }
        }
        // The Qwen parts of this config are defaults: only its spatial section is used.
        using var checkpoint = Checkpoint.OpenWith(folder, SpatialMllmConfig.Default with { Spatial = spatial });
        ConfigValidation.ValidateSpatial(spatial, configPath, prefix.Length > 0 ? "spatial_config." : "",
            checkpoint.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).Sum(k => checkpoint.Entry(k).ElementCount));
        var model = new VggtModel(spatial, device, dtype);
        model.eval();
        model.LoadWeights(checkpoint, prefix).ThrowIfIncomplete(folder);
        return model.KeepOutOfDisposeScopes();
    }

    static JsonDocument ParseJson(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new CheckpointFormatException($"{path}: malformed JSON ({e.Message}).", e); }
    }
}
