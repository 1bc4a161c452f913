using System.Globalization;

namespace SpatialMllm.Research.Evaluation;

/// <summary>What a merge found.</summary>
internal sealed record MergeReport(int Inputs, int Records, int IdenticalDuplicates, IReadOnlyList<string> ConflictingIds);

/// <summary>Merges results files (shards, or an interrupted run and its continuation) into one, keyed by id.</summary>
internal static class ResultsMerger
{
    /// <summary>Identical duplicates are kept once and counted; the same id with different answers is a conflict and
    /// nothing is written. The output is sorted by id (numerically when all ids are integers) and replaced atomically; each
    /// row keeps its video.</summary>
    public static MergeReport Merge(IReadOnlyList<string> inputs, string output)
    {
        var merged = new Dictionary<string, Prediction>();
        var conflicts = new List<string>();
        int duplicates = 0;
        foreach (string input in inputs)
            foreach (var row in PredictionFile.Read(input))
            {
                if (!merged.TryGetValue(row.Id, out var existing)) merged[row.Id] = row;
                else if (existing.Text == row.Text) duplicates++;
                else conflicts.Add(row.Id);
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
