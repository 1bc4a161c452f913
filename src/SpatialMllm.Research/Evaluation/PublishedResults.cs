namespace SpatialMllm.Research.Evaluation;

/// <summary>A published VSI-Bench summary row (×100): micro (per question) and macro (per task) averages.</summary>
public sealed record PublishedVsiBenchSummary(string Model, double MicroAcc, double MicroMra, double MicroAll,
    double MacroAcc, double MacroMra, double MacroAll, string Source);

/// <summary>
/// A published VSI-Bench row per task (×100), keyed by the task ids of <see cref="VsiBenchQuestionTypes.Tasks"/>.
/// <see cref="Average"/> is as printed: the per-question mean for Spatial-MLLM and the Qwen2.5-VL rows, the mean of the 8
/// columns for the rows copied from the VSI-Bench paper (spec §8.2).
/// </summary>
public sealed record PublishedVsiBenchTasks(string Method, IReadOnlyDictionary<string, double> Tasks, double Average, int Rank, string Source)
{
    public double this[string task] => Tasks[task];
}

/// <summary>The numbers Spatial-MLLM's authors published (spec §8), as data for side-by-side tables and charts.</summary>
public static class PublishedResults
{
    public const string ReadmeV11 = "Spatial-MLLM README (v1.1), 16 frames";
    public const string PaperTable1 = "Spatial-MLLM paper, Table 1, 16 frames";

    /// <summary>README (v1.1) VSI-Bench summary. "Qwen2.5-VL-3B-Instruct-135K" is the base model fine-tuned on the same data
    /// without the spatial encoder: the 2D-only ablation.</summary>
    public static IReadOnlyList<PublishedVsiBenchSummary> VsiBenchV11 { get; } =
    [
        new("Qwen2.5-VL-3B-Instruct", 35.42, 20.72, 27.86, 32.84, 21.65, 27.25, ReadmeV11),
        new("Qwen2.5-VL-3B-Instruct-135K", 46.91, 52.60, 49.84, 46.47, 52.81, 49.64, ReadmeV11),
        new("Spatial-MLLM-v1.1-Instruct-135K", 49.28, 52.88, 51.13, 47.07, 53.88, 50.48, ReadmeV11),
        new("Spatial-MLLM-v1.1-Instruct-135K (SA sampling)", 52.13, 53.33, 52.75, 49.15, 54.46, 51.81, ReadmeV11),
        new("Spatial-MLLM-v1.1-Instruct-820K", 49.56, 57.27, 53.53, 48.60, 57.39, 53.00, ReadmeV11),
        new("Spatial-MLLM-v1.1-Instruct-820K (SA sampling)", 50.60, 57.68, 54.24, 48.78, 58.09, 53.43, ReadmeV11),
    ];

    /// <summary>Paper Table 1 (Spatial-MLLM-4B = SFT + GRPO): Cnt, AbsD, ObjSz, RoomSz, RelD, RelDir, Route, Appr, Avg, Rank.</summary>
    public static IReadOnlyList<PublishedVsiBenchTasks> VsiBenchPaper { get; } =
    [
        Row("GPT-4o", 46.2, 5.3, 43.8, 38.2, 37.0, 41.3, 31.5, 28.5, 34.0, 7),
        Row("Gemini-1.5 Pro", 56.2, 30.9, 64.1, 43.6, 51.3, 46.3, 36.0, 34.6, 45.4, 2),
        Row("InternVL2-40B", 34.9, 26.9, 46.5, 31.8, 42.1, 32.2, 34.0, 39.6, 36.0, 6),
        Row("LongVILA-8B", 29.1, 9.1, 16.7, 0.0, 29.6, 30.7, 32.5, 25.5, 21.6, 12),
        Row("VILA-1.5-40B", 22.4, 24.8, 48.7, 22.7, 40.5, 25.7, 31.5, 32.9, 31.2, 9),
        Row("LongVA-7B", 38.0, 16.6, 38.9, 22.2, 33.1, 43.3, 25.4, 15.7, 29.2, 11),
        Row("LLaVA-OneVision-72B", 43.5, 23.9, 57.6, 37.5, 42.5, 39.9, 32.5, 44.6, 40.2, 4),
        Row("LLaVA-Video-72B", 48.9, 22.8, 57.4, 35.3, 42.4, 36.7, 35.0, 48.6, 40.9, 3),
        Row("Qwen2.5VL-3B", 24.3, 24.7, 31.7, 22.6, 38.3, 41.6, 26.3, 21.2, 30.6, 10),
        Row("Qwen2.5VL-7B", 40.9, 14.8, 43.4, 10.7, 38.6, 38.5, 33.0, 29.8, 33.0, 8),
        Row("Qwen2.5VL-72B", 25.1, 29.3, 54.5, 38.8, 38.2, 37.0, 34.0, 28.9, 37.0, 5),
        Row("Spatial-MLLM-4B", 65.3, 34.8, 63.1, 45.1, 41.3, 46.2, 33.5, 46.3, 48.4, 1),
    ];

    /// <summary>A paper row by method name (case-insensitive).</summary>
    public static PublishedVsiBenchTasks Paper(string method) =>
        VsiBenchPaper.FirstOrDefault(r => r.Method.Equals(method, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"No published row '{method}'; known: {string.Join(", ", VsiBenchPaper.Select(r => r.Method))}.");

    static PublishedVsiBenchTasks Row(string method, double cnt, double absD, double objSz, double roomSz,
        double relD, double relDir, double route, double appr, double average, int rank) =>
        new(method, VsiBenchQuestionTypes.Tasks.Zip([cnt, absD, objSz, roomSz, relD, relDir, route, appr]).ToDictionary(p => p.First, p => p.Second),
            average, rank, PaperTable1);
}
