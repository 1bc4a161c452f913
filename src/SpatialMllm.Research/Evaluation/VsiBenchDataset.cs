namespace SpatialMllm.Research.Evaluation;

/// <summary>A loaded set of VSI-Bench questions (the whole benchmark or a subset), keyed by id.</summary>
public sealed class VsiBenchDataset
{
    readonly Dictionary<int, VsiBenchQuestion> _byId;

    internal VsiBenchDataset(string sourcePath, IReadOnlyList<VsiBenchQuestion> questions, VsiBenchSubset subset)
    {
        SourcePath = sourcePath;
        Questions = questions;
        Subset = subset;
        _byId = questions.ToDictionary(q => q.Id);
    }

    public string SourcePath { get; }
    public VsiBenchSubset Subset { get; }
    /// <summary>In file order; nothing depends on this order (everything joins on id).</summary>
    public IReadOnlyList<VsiBenchQuestion> Questions { get; }
    public int Count => Questions.Count;

    public bool TryGet(int id, out VsiBenchQuestion question) => _byId.TryGetValue(id, out question!);
    public VsiBenchQuestion this[int id] => _byId[id];

    /// <summary>True when every question says whether the debiasing pruned it.</summary>
    public bool HasPrunedFlags => Questions.All(q => q.Pruned.HasValue);

    /// <summary>The debiased (pruned == false) or pruned (pruned == true) part of this set.</summary>
    public VsiBenchDataset Select(VsiBenchSubset subset)
    {
        if (subset == Subset || subset == VsiBenchSubset.Full) return this;
        if (Subset != VsiBenchSubset.Full) throw new InvalidOperationException($"This set is already the {Subset} subset.");
        if (!HasPrunedFlags)
            throw new InvalidOperationException(
                $"{SourcePath} has no 'pruned' column and no {VsiBenchLoader.PrunedIdsFileName} beside it, so the {subset} subset is unknown. " +
                "Use the Nov-2025 or later test.jsonl / parquet, or put pruned_ids.txt next to the file.");
        bool wanted = subset == VsiBenchSubset.Pruned;
        return new VsiBenchDataset(SourcePath, [.. Questions.Where(q => q.Pruned == wanted)], subset);
    }
}
