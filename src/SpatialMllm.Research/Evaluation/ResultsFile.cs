using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SpatialMllm.Research.Evaluation;

/// <summary>The results file <c>evaluate</c> writes: one <see cref="Prediction"/> per JSON line {"id", "prediction", "video"},
/// appended and flushed one at a time; ids that are integers (VSI-Bench) are written as JSON numbers, as in the dataset and
/// the seed's files, others as strings. <see cref="PredictionFile.Read"/> reads it.</summary>
internal static class ResultsFile
{
    /// <summary>Reads a results file left by an earlier run, cutting off a torn last line (no newline at the end, not
    /// valid JSON). Returns the intact rows; a missing file is an empty run.</summary>
    public static IReadOnlyList<Prediction> Recover(string path, TextWriter log)
    {
        if (!File.Exists(path)) return [];
        byte[] bytes = File.ReadAllBytes(path);
        int end = bytes.Length;
        if (end > 0 && bytes[end - 1] != (byte)'\n')
        {
            int lastNewline = Array.LastIndexOf(bytes, (byte)'\n', end - 1);
            string tail = Encoding.UTF8.GetString(bytes, lastNewline + 1, end - lastNewline - 1);
            if (!IsCompleteJson(tail) || string.IsNullOrWhiteSpace(tail))
            {
                log.WriteLine($"{path}: the last line is incomplete (the previous run was cut off while writing it); " +
                              $"dropping its {end - lastNewline - 1} bytes, that question will be answered again.");
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
                stream.SetLength(lastNewline + 1);
            }
            else File.AppendAllText(path, "\n");
        }
        return PredictionFile.Read(path);
    }

    static bool IsCompleteJson(string text)
    {
        try { JsonDocument.Parse(text); return true; }
        catch (JsonException) { return false; }
    }

    public static Writer OpenForAppend(string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        return new Writer(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read));
    }

    public static string ToLine(Prediction row)
    {
        var json = new JsonObject
        {
            ["id"] = long.TryParse(row.Id, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? JsonValue.Create(n) : JsonValue.Create(row.Id),
            ["prediction"] = row.Text,
        };
        if (row.Video != null) json["video"] = row.Video;
        return json.ToJsonString() + "\n";
    }

    internal sealed class Writer(FileStream stream) : IDisposable
    {
        /// <summary>Writes one whole line and flushes it to the disk before the next question starts.</summary>
        public void Append(Prediction row)
        {
            stream.Write(Encoding.UTF8.GetBytes(ToLine(row)));
            stream.Flush(flushToDisk: true);
        }

        public void Dispose() => stream.Dispose();
    }
}
