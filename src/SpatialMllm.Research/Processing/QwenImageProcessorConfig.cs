using System.Text.Json;

namespace SpatialMllm.Research.Processing;

/// <summary>
/// The fields of preprocessor_config.json that Qwen2VLImageProcessor uses; unknown fields are ignored.
/// Defaults are the reference class's constructor defaults (min 56², max 28²·1280, CLIP mean/std).
/// </summary>
public sealed record QwenImageProcessorConfig
{
    public static readonly IReadOnlyList<double> ClipMean = [0.48145466, 0.4578275, 0.40821073];
    public static readonly IReadOnlyList<double> ClipStd = [0.26862954, 0.26130258, 0.27577711];

    public int MinPixels { get; init; } = 56 * 56;
    public int MaxPixels { get; init; } = 28 * 28 * 1280;
    public int PatchSize { get; init; } = 14;
    public int TemporalPatchSize { get; init; } = 2;
    public int MergeSize { get; init; } = 2;
    public bool DoRescale { get; init; } = true;
    public double RescaleFactor { get; init; } = 1.0 / 255;
    public bool DoNormalize { get; init; } = true;
    public IReadOnlyList<double> ImageMean { get; init; } = ClipMean;
    public IReadOnlyList<double> ImageStd { get; init; } = ClipStd;

    /// <summary>Side of one LLM token in pixels: patch × merge (28).</summary>
    public int Factor => PatchSize * MergeSize;

    /// <summary>Reads preprocessor_config.json; fields it lacks keep their defaults.</summary>
    /// <exception cref="FileNotFoundException">The file is missing.</exception>
    /// <exception cref="InvalidDataException">A field has the wrong type or an impossible value (the message names the file).</exception>
    public static QwenImageProcessorConfig FromFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Preprocessor config not found: {path}", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var c = new QwenImageProcessorConfig();
            // Newer configs carry the pixel limits as size.shortest_edge / size.longest_edge.
            if (root.TryGetProperty("size", out var size) && size.ValueKind == JsonValueKind.Object)
            {
                if (size.TryGetProperty("shortest_edge", out var se)) c = c with { MinPixels = se.GetInt32() };
                if (size.TryGetProperty("longest_edge", out var le)) c = c with { MaxPixels = le.GetInt32() };
            }
            if (root.TryGetProperty("min_pixels", out var v)) c = c with { MinPixels = v.GetInt32() };
            if (root.TryGetProperty("max_pixels", out v)) c = c with { MaxPixels = v.GetInt32() };
            if (root.TryGetProperty("patch_size", out v)) c = c with { PatchSize = v.GetInt32() };
            if (root.TryGetProperty("temporal_patch_size", out v)) c = c with { TemporalPatchSize = v.GetInt32() };
            if (root.TryGetProperty("merge_size", out v)) c = c with { MergeSize = v.GetInt32() };
            if (root.TryGetProperty("do_rescale", out v)) c = c with { DoRescale = v.GetBoolean() };
            if (root.TryGetProperty("rescale_factor", out v)) c = c with { RescaleFactor = v.GetDouble() };
            if (root.TryGetProperty("do_normalize", out v)) c = c with { DoNormalize = v.GetBoolean() };
            if (root.TryGetProperty("image_mean", out v)) c = c with { ImageMean = ReadTriple(v, "image_mean") };
            if (root.TryGetProperty("image_std", out v)) c = c with { ImageStd = ReadTriple(v, "image_std") };
            c.Validate();
            return c;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> for values the processor cannot work with.</summary>
    public void Validate()
    {
        if (PatchSize <= 0 || TemporalPatchSize <= 0 || MergeSize <= 0)
            throw new ArgumentException($"patch_size {PatchSize}, temporal_patch_size {TemporalPatchSize} and merge_size {MergeSize} must be positive.");
        if (MinPixels <= 0 || MaxPixels < MinPixels)
            throw new ArgumentException($"Need 0 < min_pixels {MinPixels} <= max_pixels {MaxPixels}.");
        if (ImageMean.Count != 3 || ImageStd.Count != 3 || ImageStd.Any(s => s <= 0))
            throw new ArgumentException("image_mean and image_std need 3 values each, std positive.");
    }

    static double[] ReadTriple(JsonElement e, string name)
    {
        if (e.ValueKind == JsonValueKind.Number) return [e.GetDouble(), e.GetDouble(), e.GetDouble()];
        var values = e.EnumerateArray().Select(x => x.GetDouble()).ToArray();
        return values.Length == 3 ? values : throw new ArgumentException($"{name} needs 3 values, got {values.Length}.");
    }
}
