using System.Globalization;
using System.Text.Json;

namespace SpatialMllm.Research.Evaluation;

/// <summary>One model answer as read from a file; <c>Where</c> says where ("line 12", "element 3") for messages.</summary>
public sealed record Prediction(string Id, string Text, string Where);

/// <summary>
/// Reads predictions in the forms the tools here and the seed write:
/// JSON lines or a JSON array of <c>{"id", "prediction"}</c> (this project's results files and fixtures);
/// the seed's VSI-Bench results array (<c>{"sample": {"id", …}, "model_output"}</c>);
/// the seed's ScanQA results array (<c>{"sample_id", "pred_response"}</c>).
/// Ids may be JSON numbers or strings; they are kept as text.
/// </summary>
public static class PredictionFile
{
    public static IReadOnlyList<Prediction> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Predictions file not found: {path}", path);
        string text = File.ReadAllText(path);
        return text.TrimStart().StartsWith('[') ? ReadArray(path, text) : ReadLines(path, text);
    }

    static List<Prediction> ReadArray(string path, string text)
    {
        JsonElement root;
        try { root = JsonDocument.Parse(text).RootElement; }
        catch (JsonException e) { throw DataFileException.At(path, $"line {e.LineNumber + 1}", "not valid JSON: " + e.Message); }
        var result = new List<Prediction>();
        int index = 0;
        foreach (var element in root.EnumerateArray()) result.Add(FromObject(path, $"element {index++}", element));
        return result;
    }

    static List<Prediction> ReadLines(string path, string text)
    {
        var result = new List<Prediction>();
        int lineNumber = 0;
        foreach (string line in text.Split('\n'))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string where = $"line {lineNumber}";
            JsonElement element;
            try { element = JsonDocument.Parse(line).RootElement; }
            catch (JsonException e) { throw DataFileException.At(path, where, "not valid JSON: " + e.Message); }
            result.Add(FromObject(path, where, element));
        }
        return result;
    }

    static Prediction FromObject(string path, string where, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) throw DataFileException.At(path, where, "expected a JSON object");
        JsonElement id, text;
        if (e.TryGetProperty("id", out id) && e.TryGetProperty("prediction", out text)) { }
        else if (e.TryGetProperty("sample", out var sample) && sample.ValueKind == JsonValueKind.Object
                 && sample.TryGetProperty("id", out id) && e.TryGetProperty("model_output", out text)) { }
        else if (e.TryGetProperty("sample_id", out id) && e.TryGetProperty("pred_response", out text)) { }
        else throw DataFileException.At(path, where,
            "expected {\"id\", \"prediction\"}, the seed's {\"sample\": {\"id\"}, \"model_output\"} or {\"sample_id\", \"pred_response\"}");
        string idText = id.ValueKind switch
        {
            JsonValueKind.Number => id.TryGetInt64(out long l) ? l.ToString(CultureInfo.InvariantCulture)
                : throw DataFileException.At(path, where, $"id {id.GetRawText()} is not an integer"),
            JsonValueKind.String => id.GetString()!,
            _ => throw DataFileException.At(path, where, "id must be a number or a string"),
        };
        if (text.ValueKind != JsonValueKind.String) throw DataFileException.At(path, where, $"id {idText}: the prediction is not a string");
        return new Prediction(idText, text.GetString()!, where);
    }
}

/// <summary>What to do with questions that have no prediction.</summary>
public enum MissingPredictions
{
    /// <summary>Refuse to score (the default: a partial run must not pass for a full one).</summary>
    Error,
    /// <summary>Score each as an empty answer, i.e. wrong, over the whole set.</summary>
    CountAsWrong,
    /// <summary>Score only the answered questions.</summary>
    Skip,
}

/// <summary>How a prediction set lines up with a question set, by id.</summary>
public sealed record PredictionCoverage(
    int Questions, int Matched,
    IReadOnlyList<string> DuplicateIds, IReadOnlyList<string> UnknownIds, IReadOnlyList<string> MissingIds)
{
    public bool HasDuplicatesOrUnknown => DuplicateIds.Count > 0 || UnknownIds.Count > 0;

    internal static PredictionCoverage Of(IReadOnlyList<Prediction> predictions, IReadOnlyCollection<string> questionIds)
    {
        var known = questionIds as IReadOnlySet<string> ?? questionIds.ToHashSet();
        var seen = new HashSet<string>();
        var duplicates = new List<string>();
        var unknown = new List<string>();
        foreach (var p in predictions)
        {
            if (!known.Contains(p.Id)) unknown.Add(p.Id);
            else if (!seen.Add(p.Id)) duplicates.Add(p.Id);
        }
        var missing = questionIds.Where(id => !seen.Contains(id)).ToList();
        return new PredictionCoverage(questionIds.Count, seen.Count, duplicates.Distinct().ToList(), unknown, missing);
    }

    /// <summary>One line per problem, with counts and the first few ids.</summary>
    public string Describe()
    {
        static string Few(IReadOnlyList<string> ids) => string.Join(", ", ids.Take(5)) + (ids.Count > 5 ? ", …" : "");
        var lines = new List<string> { $"{Matched} of {Questions} questions have a prediction." };
        if (DuplicateIds.Count > 0) lines.Add($"{DuplicateIds.Count} id(s) predicted more than once: {Few(DuplicateIds)}");
        if (UnknownIds.Count > 0) lines.Add($"{UnknownIds.Count} prediction id(s) not in the question set: {Few(UnknownIds)}");
        if (MissingIds.Count > 0) lines.Add($"{MissingIds.Count} question(s) without a prediction: {Few(MissingIds)}");
        return string.Join(Environment.NewLine, lines);
    }
}

/// <summary>Predictions that do not line up with the questions; the message has the counts.</summary>
public sealed class PredictionMismatchException(PredictionCoverage coverage, string hint)
    : Exception(coverage.Describe() + (hint.Length > 0 ? Environment.NewLine + hint : ""))
{
    public PredictionCoverage Coverage { get; } = coverage;
}
