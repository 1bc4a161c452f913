using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Checkpoints;

/// <summary>What loading a checkpoint into a module found, by key (like <c>from_pretrained</c>'s report).</summary>
public sealed record LoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> Skipped)
{
    public bool IsComplete => Missing.Count == 0 && Unexpected.Count == 0;

    /// <summary>Throws, naming up to 20 keys of each kind, unless every module tensor was found and every
    /// checkpoint tensor used (or skipped on purpose).</summary>
    public void ThrowIfIncomplete(string source)
    {
        if (IsComplete) return;
        static string List(IReadOnlyList<string> keys) =>
            string.Join(", ", keys.Take(20)) + (keys.Count > 20 ? $", … ({keys.Count - 20} more)" : "");
        var parts = new List<string>();
        if (Missing.Count > 0) parts.Add($"{Missing.Count} missing: {List(Missing)}");
        if (Unexpected.Count > 0) parts.Add($"{Unexpected.Count} unexpected: {List(Unexpected)}");
        throw new CheckpointFormatException($"{source}: checkpoint does not match the model: {string.Join("; ", parts)}.");
    }
}

/// <summary>Copies checkpoint tensors into a module whose parameter names equal the checkpoint keys.</summary>
internal static class StateDictLoader
{
    /// <summary>
    /// Loads every parameter and persistent buffer of <paramref name="module"/> from the checkpoint key
    /// <c>prefix + name</c>. Checkpoint keys under <paramref name="prefix"/> that the module lacks are reported as
    /// unexpected, unless <paramref name="skip"/> says they are left out on purpose (e.g. heads that are not run).
    /// </summary>
    public static LoadReport Load(nn.Module module, Checkpoint checkpoint, string prefix = "", Func<string, bool>? skip = null)
    {
        var loaded = new List<string>();
        var missing = new List<string>();
        var wanted = new HashSet<string>();
        using var _ = torch.no_grad();
        foreach (var (name, tensor) in module.StateDictWithoutTiedCopies())
        {
            string key = prefix + name;
            wanted.Add(key);
            if (!checkpoint.Contains(key)) { missing.Add(key); continue; }
            checkpoint.CopyInto(key, tensor);
            loaded.Add(key);
        }
        var unexpected = new List<string>();
        var skipped = new List<string>();
        foreach (string key in checkpoint.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !wanted.Contains(k)).Order())
            (skip != null && skip(key) ? skipped : unexpected).Add(key);
        return new LoadReport(loaded, missing, unexpected, skipped);
    }
}

/// <summary>State dicts as checkpoints hold them.</summary>
internal static class StateDicts
{
    /// <summary>
    /// <c>state_dict()</c> less the keys whose tensor is one an earlier key already names — a tied weight such as
    /// <c>lm_head.weight</c> = <c>model.embed_tokens.weight</c> — as <c>save_pretrained</c> leaves them out of a
    /// checkpoint and <c>from_pretrained</c> does not ask for them.
    /// </summary>
    public static IEnumerable<KeyValuePair<string, Tensor>> StateDictWithoutTiedCopies(this nn.Module module)
    {
        var seen = new HashSet<IntPtr>();
        foreach (var entry in module.state_dict())
            if (seen.Add(entry.Value.Handle)) yield return entry;
    }
}
