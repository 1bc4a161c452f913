using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Sampling;

namespace SpatialMllm.Research.Display;

/// <summary>
/// How the library's own result types look in a notebook: the HTML behind the formatters that the package's kernel
/// extension (SpatialMllm.Research.Interactive) registers, so a cell that ends with a model, its video features, an
/// answer, a frame selection or a score shows a readable table. Callable directly too, e.g. <c>LibraryViews.Of(answer)</c>.
/// </summary>
public static class LibraryViews
{
    /// <summary>The types with a view here, for the kernel extension.</summary>
    public static IReadOnlyList<Type> Types { get; } =
        [typeof(SpatialMllmModel), typeof(VideoFeatures), typeof(Answer), typeof(FrameSelection), typeof(VsiBenchScores), typeof(ScanQaScores)];

    /// <summary>The view of <paramref name="value"/>, or null for a type without one.</summary>
    public static HtmlView? For(object value) => value switch
    {
        SpatialMllmModel model => Of(model),
        VideoFeatures features => Of(features),
        Answer answer => Of(answer),
        FrameSelection selection => Of(selection),
        VsiBenchScores scores => Of(scores),
        ScanQaScores scores => Of(scores),
        _ => null,
    };

    public static HtmlView Of(SpatialMllmModel model)
    {
        var config = model.Config;
        var rows = new List<(string, object?)>
        {
            ("checkpoint", model.Folder ?? "(in memory)"),
            ("device, dtype", $"{model.Device}, {model.DType.ToString().ToLowerInvariant()}"),
            ("spatial encoder", model.HasSpatialEncoder ? "VGGT + mlp_add connector" : "none (plain Qwen2.5-VL)"),
            ("vision tower", $"{config.Vision.Depth} blocks, hidden {config.Vision.HiddenSize}, {config.Vision.NumHeads} heads"),
        };
        if (model.LoadReport is { } report)
            rows.Add(("tensors", $"{report.Loaded.Count} loaded, {report.Missing.Count} missing, {report.Unexpected.Count} unexpected, {report.Skipped.Count} skipped"));
        return KeyValues("Spatial-MLLM model", rows);
    }

    public static HtmlView Of(VideoFeatures features) => KeyValues("Video features",
    [
        ("video tokens", features.TokenCount),
        ("grid (t, h, w)", features.Grid.ToString()),
        ("seconds per grid t", features.SecondPerGridT),
        ("fusion", features.Fusion.ToString()),
        ("embeds", $"[{string.Join(", ", features.FusedEmbeds.shape)}] {features.FusedEmbeds.dtype.ToString().ToLowerInvariant()} on {features.FusedEmbeds.device}"),
        .. features.Timings.Select(t => ($"{t.Stage} (ms)", (object?)t.Milliseconds)),
    ]);

    public static HtmlView Of(Answer answer) => KeyValues("Answer",
    [
        ("text", answer.Text),
        ("generated ids", string.Join(" ", answer.GeneratedIds)),
        ("stop", answer.StopReason.ToString()),
        ("prompt tokens (video)", $"{answer.PromptTokens} ({answer.VideoTokens})"),
        ("total ms", answer.TotalMilliseconds),
        .. StepArrays("step scores (processed)", answer.Scores),
        .. StepArrays("step logits (raw)", answer.Logits),
    ]);

    /// <summary>A row saying how many steps of how many floats an answer holds, when it holds them.</summary>
    static IEnumerable<(string, object?)> StepArrays(string name, IReadOnlyList<float[]>? steps) =>
        steps is null ? [] : [(name, $"{steps.Count} steps × {steps.FirstOrDefault()?.Length ?? 0} floats")];

    public static HtmlView Of(FrameSelection selection) => KeyValues($"Frame selection: {selection.Sampler}",
    [
        ("frames", string.Join(", ", selection.Indices)),
        ("pick order", string.Join(", ", selection.PickOrder)),
        ("candidates", selection.Candidates.Count),
    ]);

    public static HtmlView Of(VsiBenchScores scores) => Combine(
        ResultsTable.From(new[] { ("Acc", scores.Acc), ("MRA", scores.Mra), ("All", scores.All) }
            .Select(m => new { Metric = m.Item1, Micro = 100 * m.Item2.Micro, Macro = 100 * m.Item2.Macro }),
            caption: $"VSI-Bench, profile {scores.Profile}: {scores.Questions.Count} questions (×100)"),
        ResultsTable.From(scores.PerTask.Select(t => new { t.Label, t.Metric, Questions = t.Count, Score = 100 * t.Score }), caption: "Per task (×100)"));

    public static HtmlView Of(ScanQaScores scores) => ResultsTable.From(new[]
    {
        new
        {
            scores.Questions, scores.Predictions, Bleu1 = 100 * scores.Bleu1, Bleu4 = 100 * scores.Bleu4, RougeL = 100 * scores.RougeL,
            Cider = 100 * scores.Cider, ExactMatch = 100 * scores.ExactMatch,
        },
    }, caption: "ScanQA (×100)");

    static HtmlView KeyValues(string caption, IEnumerable<(string Key, object? Value)> rows) =>
        ResultsTable.From(rows.Select(r => new KeyValuePair<string, object?>[] { new("", r.Key), new(" ", r.Value) }), caption);

    static HtmlView Combine(params HtmlView[] views) =>
        new("<div style=\"display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap\">" + string.Concat(views.Select(v => $"<div>{v.Html}</div>")) + "</div>");
}
