using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models;

/// <summary>One encoder configuration of an ablation: a name for tables and charts, and the switches.</summary>
public sealed record AblationSetting(string Name, AnswerOptions Options);

/// <summary>
/// What one setting did to the visual tokens and the answers.
/// </summary>
/// <param name="ShiftFromVision">Mean over tokens of ‖x − v‖ / ‖v‖, v = the 2D-only (vision tower) tokens: how far the
/// setting moves the tokens the decoder sees away from plain Qwen2.5-VL's (0 for vision-only).</param>
/// <param name="CosineToFull">Mean over tokens of cos(x, full), full = the released model's fused tokens (1 for full).</param>
public sealed record AblationResult(string Setting, FusionMode Fusion, int? SpatialLayer, int VideoTokens,
    double ShiftFromVision, double CosineToFull, double EncodeMilliseconds, IReadOnlyList<string> Answers);

/// <summary>The paper's encoder ablations on one clip, without retraining: which visual tokens reach the decoder.</summary>
public static class EncoderAblation
{
    /// <summary>2D + 3D (the model), 2D only, 3D only, then 2D + 3D reading each VGGT layer in <paramref name="spatialLayers"/>.</summary>
    public static IReadOnlyList<AblationSetting> Settings(IEnumerable<int>? spatialLayers = null) =>
    [
        new("full (2D+3D)", new AnswerOptions(FusionMode.Full)),
        new("vision only (2D)", new AnswerOptions(FusionMode.VisionOnly)),
        new("spatial only (3D)", new AnswerOptions(FusionMode.SpatialOnly)),
        .. (spatialLayers ?? []).Select(layer => new AblationSetting($"full, VGGT layer {layer}", new AnswerOptions(FusionMode.Full, layer))),
    ];

    /// <summary>
    /// Encodes uint8 frames [T, 3, H, W] once per setting (plus the 2D-only and full references when the settings
    /// lack them), compares the tokens, and answers each question with each setting's tokens.
    /// </summary>
    public static IReadOnlyList<AblationResult> Run(SpatialMllmModel model, Tensor frames, IEnumerable<AblationSetting> settings,
        IReadOnlyList<string>? questions = null, int maxNewTokens = 16)
    {
        questions ??= [];
        var list = settings.ToList();
        using var vision = Encode(model, frames, new AnswerOptions(FusionMode.VisionOnly));
        using var full = Encode(model, frames, new AnswerOptions(FusionMode.Full));
        var results = new List<AblationResult>();
        foreach (var setting in list)
        {
            var options = setting.Options with { MaxNewTokens = maxNewTokens };
            using var features = model.EncodeFrames(frames, options);
            using var scope = torch.NewDisposeScope();
            var x = features.FusedEmbeds.to(float32);
            var v = vision.FusedEmbeds.to(float32);
            double shift = ((x - v).norm(dim: -1) / v.norm(dim: -1).clamp_min(1e-12)).mean().item<float>();
            double cosine = nn.functional.cosine_similarity(x, full.FusedEmbeds.to(float32), dim: -1).mean().item<float>();
            var answers = questions.Select(q => model.Answer(features, q, options).Text).ToArray();
            results.Add(new AblationResult(setting.Name, features.Fusion ?? setting.Options.Fusion, setting.Options.SpatialLayer, features.TokenCount,
                shift, cosine, features.Timings.Sum(t => t.Milliseconds), answers));
        }
        return results;
    }

    static VideoFeatures Encode(SpatialMllmModel model, Tensor frames, AnswerOptions options) => model.EncodeFrames(frames, options);
}
