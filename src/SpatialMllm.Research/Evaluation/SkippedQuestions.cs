using System.Text.Json;

namespace SpatialMllm.Research.Evaluation;

/// <summary>A question left unanswered because its video could not be read.</summary>
internal sealed record SkippedQuestion(string Id, string Video, string Reason);

/// <summary>The sidecar <c>{results}.skipped.jsonl</c>: one {"id", "video", "reason"} line per skipped question.</summary>
internal static class SkippedQuestions
{
    public static string PathFor(string resultsPath) => Path.ChangeExtension(resultsPath, null) + ".skipped.jsonl";

    public static void Append(string path, IEnumerable<SkippedQuestion> questions) =>
        File.AppendAllText(path, string.Concat(questions.Select(q =>
            JsonSerializer.Serialize(new { id = q.Id, video = q.Video, reason = q.Reason }) + "\n")));

    public static IReadOnlyList<SkippedQuestion> Read(string path)
    {
        if (!File.Exists(path)) return [];
        var result = new List<SkippedQuestion>();
        foreach (string line in File.ReadAllLines(path).Where(l => l.Trim().Length > 0))
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            result.Add(new SkippedQuestion(r.GetProperty("id").GetString()!, r.GetProperty("video").GetString()!, r.GetProperty("reason").GetString()!));
        }
        return result;
    }

    /// <summary>The report at the end of a run with skipped videos: a line of counts, then one per video with its reason.</summary>
    public static IEnumerable<string> Describe(IReadOnlyList<SkippedQuestion> skipped, string resultsPath)
    {
        var videos = skipped.GroupBy(q => q.Video).ToList();
        yield return $"{skipped.Count} question(s) of {videos.Count} unreadable video(s) were skipped and count as wrong in these metrics " +
                     $"(listed in {PathFor(resultsPath)}; the next run tries them again):";
        foreach (var video in videos) yield return $"  {video.Key} ({video.Count()} question(s)): {video.First().Reason}";
    }
}
