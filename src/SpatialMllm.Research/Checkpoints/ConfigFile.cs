using System.Text.Json;
using SpatialMllm.Research.Configs;

namespace SpatialMllm.Research.Checkpoints;

/// <summary>Reads a checkpoint's <c>config.json</c> into a <see cref="SpatialMllmConfig"/>, naming the file in every error.</summary>
public static class ConfigFile
{
    public static SpatialMllmConfig Load(string path)
    {
        if (!File.Exists(path)) throw new CheckpointFormatException($"{path}: file not found.");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            return SpatialMllmConfig.Parse(doc.RootElement);
        }
        catch (JsonException e) { throw new CheckpointFormatException($"{path}: malformed JSON ({e.Message}).", e); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or KeyNotFoundException)
        {
            throw new CheckpointFormatException($"{path}: {e.Message}", e);
        }
    }
}
