using System.Globalization;
using System.Text.Json;

namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// Reads predictions in the forms the tools here and the seed write:
/// JSON lines or a JSON array of <c>{"id", "prediction"}</c>, with the <c>"video"</c> it is about where given (this
/// project's results files and fixtures);
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
        string? video = null;
        if (e.TryGetProperty("id", out id) && e.TryGetProperty("prediction", out text))
            video = e.TryGetProperty("video", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
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
        return new Prediction(idText, text.GetString()!, video);
    }
}
