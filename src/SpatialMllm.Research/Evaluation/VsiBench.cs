using System.Globalization;

namespace SpatialMllm.Research.Evaluation;

/// <summary>One question whose score differs between two profiles, and why.</summary>
public sealed record VsiBenchScoreChange(
    int Id, string QuestionType, string Prediction, string GroundTruth,
    double ScoreA, double ScoreB, string ReadingA, string ReadingB);

/// <summary>Entry points for notebooks and the CLI: load VSI-Bench, score predictions, compare profiles.</summary>
public static class VsiBench
{
    /// <summary>Loads test.jsonl or test-*.parquet (row order is irrelevant; everything joins on id) and selects a subset.
    /// With <paramref name="debiasedIdsPath"/> (one id a line) the listed questions are VSI-Bench-Debiased and all others
    /// pruned, whatever the file's own 'pruned' column says.</summary>
    public static VsiBenchDataset Load(string path, VsiBenchSubset subset = VsiBenchSubset.Full, string? debiasedIdsPath = null)
    {
        var questions = VsiBenchLoader.Load(path);
        if (debiasedIdsPath != null) questions = VsiBenchLoader.ApplyDebiasedIds(debiasedIdsPath, questions);
        return new VsiBenchDataset(path, questions, VsiBenchSubset.Full).Select(subset);
    }

    /// <summary>Scores predictions (joined on id) with a profile. Duplicate or unknown ids always throw
    /// <see cref="PredictionMismatchException"/>; missing ones do unless <paramref name="missing"/> says otherwise.</summary>
    public static VsiBenchScores Score(IReadOnlyList<Prediction> predictions, VsiBenchDataset dataset,
        VsiBenchScoringProfile profile, MissingPredictions missing = MissingPredictions.Error) =>
        VsiBenchScores.Aggregate(profile.Name, ScoreEach(predictions, dataset, profile, missing));

    public static VsiBenchScores Score(string predictionsPath, VsiBenchDataset dataset,
        VsiBenchScoringProfile profile, MissingPredictions missing = MissingPredictions.Error) =>
        Score(PredictionFile.Read(predictionsPath), dataset, profile, missing);

    /// <summary>One answer to one question, scored as <see cref="Score(IReadOnlyList{Prediction}, VsiBenchDataset, VsiBenchScoringProfile, MissingPredictions)"/>
    /// scores it (exact match for multiple choice, MRA for numbers): the per-question score a reward can use.</summary>
    public static VsiBenchQuestionScore ScoreAnswer(VsiBenchQuestion question, string prediction, VsiBenchScoringProfile? profile = null) =>
        (profile ?? VsiBenchScoringProfile.SpatialMllm).Score(question, prediction);

    /// <summary>Scores on VSI-Bench-Debiased (the questions with pruned == false), as its authors recommend: the full set
    /// answered once, then filtered. Predictions for pruned questions are left out. Null when <paramref name="dataset"/> is
    /// already a subset or does not say which questions are pruned.</summary>
    public static VsiBenchScores? ScoreDebiased(IReadOnlyList<Prediction> predictions, VsiBenchDataset dataset,
        VsiBenchScoringProfile profile, MissingPredictions missing = MissingPredictions.Error)
    {
        if (dataset.Subset != VsiBenchSubset.Full || !dataset.HasPrunedFlags) return null;
        var debiased = dataset.Select(VsiBenchSubset.Debiased);
        var ids = debiased.Questions.Select(q => q.Id.ToString(CultureInfo.InvariantCulture)).ToHashSet();
        return Score([.. predictions.Where(p => ids.Contains(p.Id))], debiased, profile, missing);
    }

    /// <summary>
    /// Scores per source dataset of the scenes (arkitscenes, scannet, scannetpp), each aggregated like the whole set
    /// (its own per-type means and macro averages), keyed by dataset name in ordinal order.
    /// </summary>
    public static IReadOnlyDictionary<string, VsiBenchScores> ScoreByDataset(IReadOnlyList<Prediction> predictions,
        VsiBenchDataset dataset, VsiBenchScoringProfile profile, MissingPredictions missing = MissingPredictions.Error) =>
        ScoreEach(predictions, dataset, profile, missing)
            .GroupBy(q => dataset[q.Id].Dataset)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => VsiBenchScores.Aggregate(profile.Name, g.ToList()));

    /// <summary>
    /// Every results file (<c>*.jsonl</c>, as <c>spatial-mllm evaluate --out</c> writes them; shard files
    /// <c>*.shard-i-of-n.jsonl</c> and the lists of skipped questions <c>*.skipped.jsonl</c> are left out) in <paramref name="folder"/>, scored; keyed by file name without
    /// extension (one file per model or setting, e.g. <c>full.jsonl</c>, <c>vision-only.jsonl</c>), in ordinal order.
    /// </summary>
    public static IReadOnlyDictionary<string, VsiBenchScores> ScoreFolder(string folder, VsiBenchDataset dataset,
        VsiBenchScoringProfile profile, MissingPredictions missing = MissingPredictions.Error)
    {
        var files = Directory.GetFiles(folder, "*.jsonl").Where(f => !Path.GetFileName(f).Contains(".shard-", StringComparison.Ordinal)
                                                           && !Path.GetFileName(f).EndsWith(".skipped.jsonl", StringComparison.Ordinal))
            .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new FileNotFoundException($"No results files (*.jsonl) in {folder}.");
        var scores = new Dictionary<string, VsiBenchScores>();
        foreach (string file in files) scores[Path.GetFileNameWithoutExtension(file)] = Score(file, dataset, profile, missing);
        return scores;
    }

    /// <summary>The questions whose score changes between profile <paramref name="a"/> and <paramref name="b"/>, with what
    /// each profile read from the answer.</summary>
    public static IReadOnlyList<VsiBenchScoreChange> Diff(IReadOnlyList<Prediction> predictions, VsiBenchDataset dataset,
        VsiBenchScoringProfile a, VsiBenchScoringProfile b, MissingPredictions missing = MissingPredictions.Error)
    {
        var scoresA = ScoreEach(predictions, dataset, a, missing);
        var scoresB = ScoreEach(predictions, dataset, b, missing);
        return [.. scoresA.Zip(scoresB)
            .Where(p => p.First.Score != p.Second.Score)
            .Select(p => new VsiBenchScoreChange(p.First.Id, p.First.QuestionType, p.First.Prediction, p.First.GroundTruth,
                p.First.Score, p.Second.Score, p.First.Reading, p.Second.Reading))];
    }

    /// <summary>One score per question, in id order.</summary>
    static List<VsiBenchQuestionScore> ScoreEach(IReadOnlyList<Prediction> predictions, VsiBenchDataset dataset,
        VsiBenchScoringProfile profile, MissingPredictions missing)
    {
        var ids = dataset.Questions.Select(q => q.Id.ToString(CultureInfo.InvariantCulture)).ToHashSet();
        var coverage = PredictionCoverage.Of(predictions, ids);
        if (coverage.HasDuplicatesOrUnknown || (coverage.MissingIds.Count > 0 && missing == MissingPredictions.Error))
            throw new PredictionMismatchException(coverage, coverage.HasDuplicatesOrUnknown
                ? "Fix the predictions file (or `spatial-mllm merge` shard files, which resolves identical duplicates)."
                : "Finish the run, or choose to count missing answers as wrong or to score only the answered questions.");
        var byId = predictions.ToDictionary(p => int.Parse(p.Id, CultureInfo.InvariantCulture), p => p.Text);
        var scores = new List<VsiBenchQuestionScore>(dataset.Count);
        foreach (var question in dataset.Questions.OrderBy(q => q.Id))
        {
            if (byId.TryGetValue(question.Id, out string? text)) scores.Add(profile.Score(question, text));
            else if (missing == MissingPredictions.CountAsWrong) scores.Add(profile.Score(question, ""));
        }
        return scores;
    }
}
