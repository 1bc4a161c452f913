using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SpatialMllm.Research.Evaluation;

/// <summary>One ScanQA question in the seed's (Video-3D-LLM "llava style") form.</summary>
/// <param name="Id">"scanqa_{question_id}_0", the key predictions are joined on.</param>
/// <param name="Prompt">The human turn, used verbatim by the seed, "&lt;image&gt; " prefix included.</param>
public sealed record ScanQaQuestion(string Id, string SceneId, string Prompt, IReadOnlyList<string> Answers)
{
    /// <summary>"scannet/{scene_id}"; the video file is {video folder}/{scene_id}.mp4.</summary>
    public string VideoKey => $"scannet/{SceneId}";
}

public sealed class ScanQaDataset
{
    readonly Dictionary<string, ScanQaQuestion> _byId;

    internal ScanQaDataset(string sourcePath, IReadOnlyList<ScanQaQuestion> questions)
    {
        SourcePath = sourcePath;
        Questions = questions;
        _byId = questions.ToDictionary(q => q.Id);
    }

    public string SourcePath { get; }
    public IReadOnlyList<ScanQaQuestion> Questions { get; }
    public int Count => Questions.Count;
    public bool TryGet(string id, out ScanQaQuestion question) => _byId.TryGetValue(id, out question!);
}

/// <summary>ScanQA scores as the seed's score_scanqa.py computes them, all as fractions (the seed prints BLEU, ROUGE-L and
/// CIDEr ×100 and EM as a fraction). METEOR comes from the official Meteor 1.5 jar when Java and the jar are there
/// (spec §6.4); otherwise <see cref="Meteor"/> says why it was not computed.</summary>
public sealed record ScanQaScores(
    int Questions, int Predictions,
    double Bleu1, double Bleu2, double Bleu3, double Bleu4,
    double RougeL, double Cider, double ExactMatch)
{
    public MeteorResult Meteor { get; init; } = MeteorResult.NotComputed("not requested");

    public JsonObject ToMetricsJson() => new()
    {
        ["count"] = Questions,
        ["predictions"] = Predictions,
        ["Bleu_1"] = Bleu1, ["Bleu_2"] = Bleu2, ["Bleu_3"] = Bleu3, ["Bleu_4"] = Bleu4,
        ["ROUGE_L"] = RougeL,
        ["CIDEr"] = Cider,
        ["EM"] = ExactMatch,
        ["METEOR"] = Meteor.Score,
        ["METEOR_not_computed"] = Meteor.NotComputedReason,
    };

    public string ToMetricsJsonText() => ToMetricsJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    public string FormatTable()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"ScanQA, {Questions} questions, {Predictions} predictions (×100; no PTB tokenisation)");
        foreach (var (name, value) in new[] { ("BLEU-1", Bleu1), ("BLEU-2", Bleu2), ("BLEU-3", Bleu3), ("BLEU-4", Bleu4),
                     ("ROUGE-L", RougeL), ("CIDEr", Cider), ("EM", ExactMatch) })
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{name,-8} {value * 100,8:F2}"));
        sb.AppendLine(Meteor.Score is double meteor
            ? string.Create(CultureInfo.InvariantCulture, $"{"METEOR",-8} {meteor * 100,8:F2}")
            : $"{"METEOR",-8} not computed: {Meteor.NotComputedReason}");
        return sb.ToString().TrimEnd();
    }
}

/// <summary>Entry points for ScanQA: load the val annotations, score predictions.</summary>
public static class ScanQa
{
    /// <summary>The question text the seed's preprocessing (Video-3D-LLM process_scanqa.py) builds.</summary>
    public static string BuildPrompt(string question) => $"<image> {question} Answer the question simply.";

    /// <summary>Loads the official ScanQA_v1.0_val.json (question_id, scene_id, question, answers) or the seed's
    /// scanqa_val_llava_style.json (id, video, conversations, metadata.answers).</summary>
    public static ScanQaDataset Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ScanQA annotations not found: {path}", path);
        JsonElement root;
        try { root = JsonDocument.Parse(File.ReadAllText(path)).RootElement; }
        catch (JsonException e) { throw DataFileException.At(path, $"line {e.LineNumber + 1}", "not valid JSON: " + e.Message); }
        if (root.ValueKind != JsonValueKind.Array) throw DataFileException.At(path, "top level", "expected a JSON array");
        var questions = new List<ScanQaQuestion>();
        int index = 0;
        foreach (var e in root.EnumerateArray())
        {
            string where = $"element {index++}";
            questions.Add(e.TryGetProperty("conversations", out _) ? FromLlavaStyle(path, where, e) : FromOfficial(path, where, e));
        }
        var duplicates = questions.GroupBy(q => q.Id).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        if (duplicates.Count > 0) throw new DataFileException($"{path}: {duplicates.Count} duplicate id(s), e.g. {string.Join(", ", duplicates.Take(5))}");
        return new ScanQaDataset(path, questions);
    }

    static ScanQaQuestion FromOfficial(string path, string where, JsonElement e)
    {
        string questionId = String(path, where, e, "question_id");
        return new ScanQaQuestion($"scanqa_{questionId}_0", String(path, where, e, "scene_id"),
            BuildPrompt(String(path, where, e, "question")), Answers(path, where, e));
    }

    static ScanQaQuestion FromLlavaStyle(string path, string where, JsonElement e)
    {
        string id = String(path, where, e, "id");
        string video = String(path, where, e, "video");
        var turns = e.GetProperty("conversations");
        if (turns.ValueKind != JsonValueKind.Array || turns.GetArrayLength() < 1)
            throw DataFileException.At(path, where, $"{id}: 'conversations' is empty");
        if (!e.TryGetProperty("metadata", out var metadata) || metadata.ValueKind != JsonValueKind.Object)
            throw DataFileException.At(path, where, $"{id}: 'metadata.answers' is missing");
        return new ScanQaQuestion(id, video.Split('/')[^1], String(path, where, turns[0], "value"), Answers(path, where, metadata));
    }

    static string String(string path, string where, JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0
            ? v.GetString()! : throw DataFileException.At(path, where, $"'{name}' is missing or not a non-empty string");

    static IReadOnlyList<string> Answers(string path, string where, JsonElement e) =>
        e.TryGetProperty("answers", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0
            && a.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String)
            ? [.. a.EnumerateArray().Select(x => x.GetString()!)]
            : throw DataFileException.At(path, where, "'answers' must be a non-empty list of strings");

    /// <summary>The seed's id normalisation: the last "_"-separated field becomes "0"
    /// ("scanqa_val-scene0011-0_3" → "scanqa_val-scene0011-0_0"). An id without "_" (the official file's question_id,
    /// "val-scene0011-0") is kept whole: cutting it would map every question to "0".</summary>
    public static string NormalizeId(string sampleId)
    {
        int cut = sampleId.LastIndexOf('_');
        return cut < 0 ? sampleId : sampleId[..(cut + 1)] + "0";
    }

    /// <summary>Scores predictions as score_scanqa.py does: ids normalised; the prediction Python-stripped (as the seed's
    /// eval saved it); for BLEU/ROUGE-L/CIDEr only trailing dots removed, against the raw reference answers; EM = the
    /// stripped prediction is literally one of the answers (case-sensitive), over the number of predictions.
    /// Duplicate (after normalisation) or unknown ids throw; missing ones too unless <paramref name="missing"/> says otherwise
    /// (CIDEr's idf depends on which questions are scored). METEOR runs <paramref name="meteorJar"/> (else
    /// $SPATIAL_MLLM_METEOR_JAR) on the same samples; without it the scores say why it was not computed.</summary>
    public static ScanQaScores Score(IReadOnlyList<Prediction> predictions, ScanQaDataset dataset,
        MissingPredictions missing = MissingPredictions.Error, string? meteorJar = null)
    {
        var normalized = predictions.Select(p => p with { Id = NormalizeId(p.Id) }).ToList();
        var coverage = PredictionCoverage.Of(normalized, dataset.Questions.Select(q => q.Id).ToHashSet());
        if (coverage.HasDuplicatesOrUnknown || (coverage.MissingIds.Count > 0 && missing == MissingPredictions.Error))
            throw new PredictionMismatchException(coverage, "Ids are compared after the seed's normalisation (last \"_\" field → 0).");
        var answered = normalized.ToDictionary(p => p.Id, p => PythonText.Strip(p.Text));
        var scored = dataset.Questions
            .Where(q => answered.ContainsKey(q.Id) || missing == MissingPredictions.CountAsWrong)
            .Select(q => (Question: q, Text: answered.GetValueOrDefault(q.Id, "")))
            .ToList();
        var samples = scored.Select(s => new CaptionMetrics.Sample(PythonText.RStrip(s.Text, '.'), s.Question.Answers)).ToList();
        double[] bleu = CaptionMetrics.Bleu(samples);
        int exact = scored.Count(s => s.Question.Answers.Contains(s.Text));
        return new ScanQaScores(scored.Count, predictions.Count, bleu[0], bleu[1], bleu[2], bleu[3],
            CaptionMetrics.RougeL(samples).Mean, CaptionMetrics.Cider(samples).Mean,
            scored.Count == 0 ? 0 : exact / (double)scored.Count)
        {
            Meteor = Evaluation.Meteor.Compute(samples, Evaluation.Meteor.ResolveJar(meteorJar)),
        };
    }

    public static ScanQaScores Score(string predictionsPath, ScanQaDataset dataset, MissingPredictions missing = MissingPredictions.Error,
        string? meteorJar = null) =>
        Score(PredictionFile.Read(predictionsPath), dataset, missing, meteorJar);
}
