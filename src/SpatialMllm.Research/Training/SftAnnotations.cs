using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace SpatialMllm.Research.Training;

/// <summary>A row of an annotation file that cannot be trained on: the file, its 1-based line (JSONL) or item
/// index (JSON list), and why.</summary>
public sealed class AnnotationException(string file, int line, string reason)
    : Exception($"{file}:{line}: {reason}")
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Reason { get; } = reason;
}

/// <summary>One turn of a conversation (the seed's <c>from</c>/<c>value</c>, or <c>role</c>/<c>content</c>).</summary>
public sealed record SftTurn(string Role, string Text);

/// <summary>
/// One annotation row in the seed's format: <c>{"video": "scene.mp4", "conversations": [{"from": "human", "value":
/// "&lt;video&gt;\nQuestion"}, {"from": "gpt", "value": "Answer"}]}</c>; the video path is relative to
/// <see cref="DataPath"/>.
/// </summary>
public sealed record SftRow(string File, int Line, string Video, string DataPath, IReadOnlyList<SftTurn> Conversations)
{
    public string VideoPath => Path.IsPathRooted(Video) ? Video : Path.Combine(DataPath, Video);
    public string Source => $"{File}:{Line}";
}

/// <summary>
/// Reads the seed's annotation files (<c>.jsonl</c>, or a <c>.json</c> list). <c>--dataset_use</c> names files rather
/// than the seed's registry entries: <c>a.jsonl,b.json%50</c> (the seed's <c>%N</c> keeps N percent, sampled with
/// seed 42). A row that does not parse is returned as an <see cref="AnnotationException"/>, not thrown, so one bad row
/// costs that row only.
/// </summary>
public static class SftAnnotations
{
    static readonly Regex SamplingSuffix = new(@"%(\d+)$", RegexOptions.Compiled);

    /// <summary>The annotation files <c>--dataset_use</c> names, each with its sampling percentage (null: every row).
    /// Throws naming a percentage outside 1–100; <see cref="Files"/> also checks that the files exist.</summary>
    public static IReadOnlyList<(string File, int? Percent)> ParseDatasetUse(string datasetUse)
    {
        var files = new List<(string, int?)>();
        foreach (string entry in datasetUse.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var match = SamplingSuffix.Match(entry);
            int? percent = null;
            if (match.Success)
            {
                if (!int.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int p) || p is < 1 or > 100)
                    throw new ArgumentException($"dataset_use '{entry}': the sampling percentage after % must be 1 to 100.");
                percent = p;
            }
            files.Add((match.Success ? entry[..match.Index] : entry, percent));
        }
        if (files.Count == 0) throw new ArgumentException($"dataset_use '{datasetUse}' names no annotation file.");
        return files;
    }

    /// <summary><see cref="ParseDatasetUse"/>, with every file present.</summary>
    public static IReadOnlyList<(string File, int? Percent)> Files(string datasetUse)
    {
        var files = ParseDatasetUse(datasetUse);
        foreach (var (file, _) in files)
            if (!System.IO.File.Exists(file)) throw new FileNotFoundException($"Annotation file not found: {file} (from --dataset_use '{datasetUse}').", file);
        return files;
    }

    /// <param name="dataPath">Folder the video paths are relative to; null: each annotation file's folder.</param>
    public static (List<SftRow> Rows, List<AnnotationException> Errors) Load(string datasetUse, string? dataPath = null)
    {
        var rows = new List<SftRow>();
        var errors = new List<AnnotationException>();
        var random = new Random(42);
        foreach (var (file, percent) in Files(datasetUse))
        {
            string root = dataPath ?? Path.GetDirectoryName(Path.GetFullPath(file))!;
            var fileRows = new List<SftRow>();
            foreach (var (line, json) in ReadItems(file, errors))
            {
                try { fileRows.Add(Parse(file, line, json, root)); }
                catch (AnnotationException e) { errors.Add(e); }
            }
            if (percent is int keep) fileRows = fileRows.OrderBy(_ => random.Next()).Take(fileRows.Count * keep / 100).ToList();
            rows.AddRange(fileRows);
        }
        return (rows, errors);
    }

    static IEnumerable<(int Line, JsonElement Item)> ReadItems(string file, List<AnnotationException> errors)
    {
        if (file.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
        {
            int line = 0;
            foreach (string text in System.IO.File.ReadLines(file))
            {
                line++;
                if (string.IsNullOrWhiteSpace(text)) continue;
                JsonElement item;
                try { using var doc = JsonDocument.Parse(text); item = doc.RootElement.Clone(); }
                catch (JsonException e) { errors.Add(new AnnotationException(file, line, "not valid JSON: " + e.Message)); continue; }
                yield return (line, item);
            }
            yield break;
        }
        JsonElement whole;
        // One list: a syntax error anywhere leaves no row readable, so the file is an error, named with its line.
        try { using var doc = JsonDocument.Parse(System.IO.File.ReadAllBytes(file)); whole = doc.RootElement.Clone(); }
        catch (JsonException e) { throw new InvalidDataException($"{file}:{e.LineNumber + 1}: not valid JSON ({e.Message}); a .json annotation file is one list, so none of its rows can be read."); }
        if (whole.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{file}: a .json annotation file must hold a list of rows.");
        int index = 0;
        foreach (var item in whole.EnumerateArray()) yield return (++index, item);
    }

    static SftRow Parse(string file, int line, JsonElement row, string dataPath)
    {
        AnnotationException Bad(string why) => new(file, line, why);
        if (row.ValueKind != JsonValueKind.Object) throw Bad("a row must be a JSON object");
        if (row.TryGetProperty("image", out _)) throw Bad("image rows are not supported (Spatial-MLLM trains on videos)");
        if (!row.TryGetProperty("video", out var video)) throw Bad("no \"video\"");
        string videoPath = video.ValueKind switch
        {
            JsonValueKind.String => video.GetString()!,
            JsonValueKind.Array when video.GetArrayLength() == 1 && video[0].ValueKind == JsonValueKind.String => video[0].GetString()!,
            _ => throw Bad("\"video\" must be a path (or a list of one path)"),
        };
        if (row.TryGetProperty("data_path", out var rowRoot) && rowRoot.ValueKind == JsonValueKind.String) dataPath = rowRoot.GetString()!;
        if (!row.TryGetProperty("conversations", out var conversations) || conversations.ValueKind != JsonValueKind.Array)
            throw Bad("no \"conversations\" list");
        var turns = new List<SftTurn>();
        foreach (var turn in conversations.EnumerateArray())
        {
            string? role = Text(turn, "from") ?? Text(turn, "role");
            string? text = Text(turn, "value") ?? Text(turn, "content");
            if (role is null || text is null) throw Bad($"turn {turns.Count + 1} needs \"from\"/\"value\" (or \"role\"/\"content\") strings");
            role = role switch { "human" => "user", "gpt" => "assistant", _ => role };
            if (role is not ("user" or "assistant" or "system")) throw Bad($"turn {turns.Count + 1} has an unknown role '{role}'");
            turns.Add(new SftTurn(role, text));
        }
        // data_qwen.py drops a leading non-human turn.
        if (turns.Count > 0 && turns[0].Role != "user") turns.RemoveAt(0);
        if (!turns.Any(t => t.Role == "assistant")) throw Bad("no assistant (\"gpt\") turn: nothing to learn");
        int videoTags = turns.Where(t => t.Role == "user").Sum(t => CountOf(t.Text, "<video>"));
        if (videoTags != 1) throw Bad($"the user turns must hold exactly one <video> tag, found {videoTags}");
        return new SftRow(file, line, videoPath, dataPath, turns);
    }

    static string? Text(JsonElement turn, string name) =>
        turn.ValueKind == JsonValueKind.Object && turn.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    static int CountOf(string text, string tag)
    {
        int count = 0;
        for (int i = text.IndexOf(tag, StringComparison.Ordinal); i >= 0; i = text.IndexOf(tag, i + tag.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}
