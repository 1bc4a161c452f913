namespace SpatialMllm.Research.Evaluation;

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
