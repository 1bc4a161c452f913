namespace SpatialMllm.Research.Evaluation;

/// <summary>A finished results file scored: the metrics JSON (written beside the results) and the table for the reader.</summary>
internal sealed record BenchmarkScore(string MetricsJson, string Table);

/// <summary>
/// A benchmark's part of an evaluation run: its questions as runner items, how they are answered, and how a finished
/// results file is scored. Everything else about a run (resume, shards, workers, merge) is the same for every benchmark
/// (<see cref="EvaluationJob"/>).
/// </summary>
/// <param name="Name">"vsibench" or "scanqa": the manifest's benchmark and the command's name.</param>
/// <param name="DatasetPath">The annotations file; its hash goes into the run manifest.</param>
/// <param name="StripAnswers">Store answers Python-<c>.strip()</c>-ped (the seed's ScanQA evaluation does).</param>
internal sealed record EvaluationBenchmark(string Name, string DatasetPath, IReadOnlyList<EvaluationItem> Items, AnswererOptions Options,
    Func<string, MissingPredictions, BenchmarkScore> Score, bool StripAnswers = false)
{
    /// <summary>VSI-Bench (or a folder of synthetic scenes in its layout) with the seed's prompts, scored with
    /// <paramref name="profile"/>.</summary>
    public static EvaluationBenchmark ForVsiBench(string datasetPath, string videoRoot, VsiBenchSubset subset, VsiBenchScoringProfile profile,
        AnswererOptions options)
    {
        var questions = VsiBench.Load(datasetPath, subset);
        return new EvaluationBenchmark("vsibench", datasetPath, VsiBenchVideos.Items(questions, videoRoot), options, (results, missing) =>
        {
            var scores = VsiBench.Score(results, questions, profile, missing);
            return new BenchmarkScore(scores.ToMetricsJsonText(), scores.FormatTable());
        });
    }

    /// <summary>ScanQA val the seed's way: frames resized to 480×640, the question text verbatim, answers stripped;
    /// METEOR from <paramref name="meteorJar"/> when Java is there.</summary>
    public static EvaluationBenchmark ForScanQa(string datasetPath, string videoRoot, string? meteorJar, AnswererOptions options)
    {
        var dataset = ScanQa.Load(datasetPath);
        return new EvaluationBenchmark("scanqa", datasetPath, ScanQaVideos.Items(dataset, videoRoot),
            options with { ResizedSize = ScanQaVideos.ResizedSize }, (results, missing) =>
            {
                var scores = ScanQa.Score(results, dataset, missing, meteorJar);
                return new BenchmarkScore(scores.ToMetricsJsonText(), scores.FormatTable());
            },
            StripAnswers: true);
    }
}
