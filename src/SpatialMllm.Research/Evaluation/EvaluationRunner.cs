using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SpatialMllm.Research.Evaluation;

/// <summary>One question to put to the answerer.</summary>
internal sealed record EvaluationItem(string Id, BenchmarkVideo Video, string Prompt);

/// <summary>Where a run stands: answered in this run, already done before it, and the total for this shard; what it is doing
/// when that is not answering (null: answering <paramref name="CurrentVideo"/>, or done).</summary>
internal sealed record EvaluationProgress(int AnsweredNow, int DoneBefore, int Total, TimeSpan Elapsed, string? CurrentVideo, string? Activity = null);

/// <summary>Shard "i/N": this process answers the videos of partition i (0-based) out of N.</summary>
internal sealed record Shard(int Index, int Count)
{
    public static Shard Whole { get; } = new(0, 1);

    public static Shard Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length == 2 && int.TryParse(parts[0], out int i) && int.TryParse(parts[1], out int n) && n >= 1 && i >= 0 && i < n)
            return new Shard(i, n);
        throw new FormatException($"--shard expects i/N with 0 <= i < N, e.g. 0/4; got '{text}'.");
    }

    public override string ToString() => $"{Index}/{Count}";

    /// <summary>The items of this shard. Whole videos go to one shard (features are computed once per video);
    /// videos are dealt largest first to the shard with the fewest questions so far (ties: lower shard, then key
    /// order), which depends only on the item list, so every worker computes the same partition.</summary>
    public IReadOnlyList<EvaluationItem> Select(IReadOnlyList<EvaluationItem> items)
    {
        if (Count == 1) return items;
        var load = new int[Count];
        var mine = new HashSet<string>();
        foreach (var video in items.GroupBy(i => i.Video.Key).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal))
        {
            int target = Array.IndexOf(load, load.Min());
            load[target] += video.Count();
            if (target == Index) mine.Add(video.Key);
        }
        return [.. items.Where(i => mine.Contains(i.Video.Key))];
    }
}

/// <summary>What to do when a video cannot be read.</summary>
internal enum OnVideoError
{
    /// <summary>Stop the run (the default): the error names the file.</summary>
    Stop,
    /// <summary>Record the video's questions with the reason in <c>{results}.skipped.jsonl</c> and go on; they are
    /// retried on the next run.</summary>
    Skip,
}

/// <summary>A question left unanswered because its video could not be read.</summary>
internal sealed record SkippedQuestion(string Id, string Video, string Reason);

/// <summary>What a run did: answers written now, and the questions skipped (with <see cref="OnVideoError.Skip"/>).</summary>
internal sealed record EvaluationSummary(int Answered, IReadOnlyList<SkippedQuestion> Skipped);

/// <summary>
/// Answers items video by video and appends one JSON line per answer to a results file, flushed to disk each time. A
/// video's questions are answered as one batch and written when the batch returns, so a killed run loses at most the
/// batch in flight (one video's questions), which the next run answers again. Videos are decoded ahead on worker threads
/// (<see cref="DecodeAheadOptions"/>) while the device encodes and answers the one before. On start it reads what the file
/// (and any other files named as already done) holds and answers only the rest; a torn last line, the mark of a kill
/// mid-write, is cut off with a message. Any other malformed line is an error: the file is not ours to repair.
/// </summary>
internal static class EvaluationRunner
{
    /// <summary>Runs to completion or cancellation (cancellation is checked between videos: the batch in progress is
    /// finished and flushed; videos decoded ahead are dropped). Videos that cannot be read stop the run when the runner
    /// reaches them (in video order, whichever thread decoded them), or with <see cref="OnVideoError.Skip"/> are listed
    /// in <c>{results}.skipped.jsonl</c>, rewritten by every run, so skipped questions are tried again next time.</summary>
    /// <param name="decodeAhead">Null: <see cref="DecodeAheadOptions.Default"/>.</param>
    public static EvaluationSummary Run(
        IReadOnlyList<EvaluationItem> items, IVideoAnswerer answerer, string resultsPath,
        TextWriter log, Action<EvaluationProgress>? progress = null,
        IReadOnlyList<string>? alsoDonePaths = null, CancellationToken cancel = default, OnVideoError onError = OnVideoError.Stop,
        DecodeAheadOptions? decodeAhead = null)
    {
        var done = ResultsFile.Recover(resultsPath, log).Select(r => r.Id).ToHashSet();
        foreach (string other in alsoDonePaths ?? [])
            if (File.Exists(other)) done.UnionWith(ResultsFile.Read(other).Select(r => r.Id));
        int doneBefore = items.Count(i => done.Contains(i.Id));
        var todo = items.Where(i => !done.Contains(i.Id)).ToList();
        if (doneBefore > 0) log.WriteLine($"Resuming {resultsPath}: {doneBefore} of {items.Count} already answered, {todo.Count} to go.");

        var clock = Stopwatch.StartNew();
        int answered = 0;
        var skipped = new List<SkippedQuestion>();
        string skippedPath = SkippedQuestions.PathFor(resultsPath);
        if (File.Exists(skippedPath)) File.Delete(skippedPath);
        using var writer = ResultsFile.OpenForAppend(resultsPath);
        progress?.Invoke(new EvaluationProgress(0, doneBefore, items.Count, clock.Elapsed, null));
        // Videos in key order, questions in item order: the same sequence on every run, so resumed runs are reproducible.
        var videos = todo.GroupBy(i => i.Video.Key).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
        using var decoding = new DecodeAhead([.. videos.Select(v => v.First().Video)], answerer.Decode, decodeAhead ?? DecodeAheadOptions.Default, cancel);
        foreach (var video in videos)
        {
            cancel.ThrowIfCancellationRequested();
            progress?.Invoke(new EvaluationProgress(answered, doneBefore, items.Count, clock.Elapsed, video.Key, $"decoding and encoding video {video.Key}"));
            IPreparedVideo prepared;
            try
            {
                using var decoded = decoding.Next();
                prepared = decoded.Encode();
            }
            catch (Exception e) when (onError == OnVideoError.Skip && IsUnreadableVideo(e))
            {
                var lost = video.Select(i => new SkippedQuestion(i.Id, video.Key, e.Message)).ToList();
                SkippedQuestions.Append(skippedPath, lost);
                skipped.AddRange(lost);
                log.WriteLine($"skipped {video.Key} ({lost.Count} question(s)): {e.Message}");
                continue;
            }
            using (prepared)
            {
                var questions = video.ToList();
                var answers = prepared.Answer([.. questions.Select(i => i.Prompt)]);
                if (answers.Count != questions.Count)
                    throw new InvalidOperationException($"The answerer returned {answers.Count} answers to the {questions.Count} questions of {video.Key}.");
                foreach (var (item, answer) in questions.Zip(answers))
                    writer.Append(new ResultRecord(item.Id, answer, item.Video.Key));
                answered += questions.Count;
                progress?.Invoke(new EvaluationProgress(answered, doneBefore, items.Count, clock.Elapsed, video.Key));
            }
        }
        return new EvaluationSummary(answered, skipped);
    }

    /// <summary>A video that is missing, not a video, truncated or that ffmpeg cannot decode; other failures (the
    /// model's) always stop the run.</summary>
    static bool IsUnreadableVideo(Exception e) =>
        e is Video.VideoReadException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException;
}

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
}

/// <summary>One answered question as stored in a results file.</summary>
internal sealed record ResultRecord(string Id, string Prediction, string? Video);

/// <summary>The results file format: JSON lines {"id", "prediction", "video"}; ids that are integers (VSI-Bench) are written
/// as JSON numbers, as in the dataset and the seed's files, others as strings.</summary>
internal static class ResultsFile
{
    public static IReadOnlyList<ResultRecord> Read(string path) =>
        [.. PredictionFile.Read(path).Select(p => new ResultRecord(p.Id, p.Text, null))];

    /// <summary>Reads a results file left by an earlier run, cutting off a torn last line (no newline at the end, not
    /// valid JSON). Returns the intact records; a missing file is an empty run.</summary>
    public static IReadOnlyList<ResultRecord> Recover(string path, TextWriter log)
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
        return Read(path);
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

    public static string ToLine(ResultRecord record)
    {
        var json = new JsonObject
        {
            ["id"] = long.TryParse(record.Id, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? JsonValue.Create(n) : JsonValue.Create(record.Id),
            ["prediction"] = record.Prediction,
        };
        if (record.Video != null) json["video"] = record.Video;
        return json.ToJsonString() + "\n";
    }

    internal sealed class Writer(FileStream stream) : IDisposable
    {
        /// <summary>Writes one whole line and flushes it to the disk before the next question starts.</summary>
        public void Append(ResultRecord record)
        {
            stream.Write(Encoding.UTF8.GetBytes(ToLine(record)));
            stream.Flush(flushToDisk: true);
        }

        public void Dispose() => stream.Dispose();
    }
}

/// <summary>What a merge found.</summary>
internal sealed record MergeReport(int Inputs, int Records, int IdenticalDuplicates, IReadOnlyList<string> ConflictingIds);

/// <summary>Merges results files (shards, or an interrupted run and its continuation) into one, keyed by id.</summary>
internal static class ResultsMerger
{
    /// <summary>Identical duplicates are kept once and counted; the same id with different answers is a conflict and
    /// nothing is written. The output is sorted by id (numerically when all ids are integers) and replaced atomically.</summary>
    public static MergeReport Merge(IReadOnlyList<string> inputs, string output)
    {
        var merged = new Dictionary<string, ResultRecord>();
        var conflicts = new List<string>();
        int duplicates = 0;
        foreach (string input in inputs)
            foreach (var record in ResultsFile.Read(input))
            {
                if (!merged.TryGetValue(record.Id, out var existing)) merged[record.Id] = record;
                else if (existing.Prediction == record.Prediction) duplicates++;
                else conflicts.Add(record.Id);
            }
        var report = new MergeReport(inputs.Count, merged.Count, duplicates, conflicts.Distinct().ToList());
        if (report.ConflictingIds.Count > 0) return report;
        bool numeric = merged.Keys.All(k => long.TryParse(k, NumberStyles.None, CultureInfo.InvariantCulture, out _));
        var ordered = numeric ? merged.Values.OrderBy(r => long.Parse(r.Id, CultureInfo.InvariantCulture))
                              : merged.Values.OrderBy(r => r.Id, StringComparer.Ordinal);
        string temp = output + ".merging";
        File.WriteAllText(temp, string.Concat(ordered.Select(ResultsFile.ToLine)));
        File.Move(temp, output, overwrite: true);
        return report;
    }
}
