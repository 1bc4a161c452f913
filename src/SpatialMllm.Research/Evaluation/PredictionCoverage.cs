namespace SpatialMllm.Research.Evaluation;

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
