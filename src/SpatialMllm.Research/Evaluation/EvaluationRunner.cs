using System.Diagnostics;

namespace SpatialMllm.Research.Evaluation;

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
    /// <param name="stripAnswers">Store each answer Python-<c>.strip()</c>-ped, as the seed's ScanQA evaluation saves them.</param>
    public static EvaluationSummary Run(
        IReadOnlyList<EvaluationItem> items, IVideoAnswerer answerer, string resultsPath,
        TextWriter log, Action<EvaluationProgress>? progress = null,
        IReadOnlyList<string>? alsoDonePaths = null, CancellationToken cancel = default, OnVideoError onError = OnVideoError.Stop,
        DecodeAheadOptions? decodeAhead = null, bool stripAnswers = false)
    {
        var done = ResultsFile.Recover(resultsPath, log).Select(r => r.Id).ToHashSet();
        foreach (string other in alsoDonePaths ?? [])
            if (File.Exists(other)) done.UnionWith(PredictionFile.Read(other).Select(r => r.Id));
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
                    writer.Append(new Prediction(item.Id, stripAnswers ? PythonText.Strip(answer) : answer, item.Video.Key));
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
