using System.Text.Json;
using System.Text.RegularExpressions;

namespace SpatialMllm.Research.Hub;

/// <summary>
/// Which files of a repository to download: shell-style patterns matched against the whole path in the repository
/// (huggingface_hub's allow_patterns, fnmatch: <c>*</c> also crosses '/'; a pattern ending in '/' takes the folder).
/// </summary>
public sealed class RepoFilePatterns
{
    /// <summary>What loading a model needs: config, tokenizer, processor, generation config, chat template and the
    /// safetensors weights with their index, at the top of the repository (not optimizer states or other formats).</summary>
    public static RepoFilePatterns ModelDefaults { get; } = new(
    [
        "config.json", "generation_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
        "chat_template.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
        "added_tokens.json", "special_tokens_map.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
    ], isModelDefaults: true);

    /// <summary>Every file (a dataset's default).</summary>
    public static RepoFilePatterns Everything { get; } = new(["*"], isModelDefaults: false);

    readonly Regex[] _regexes;
    readonly bool _isModelDefaults;

    public IReadOnlyList<string> Patterns { get; }

    RepoFilePatterns(IReadOnlyList<string> patterns, bool isModelDefaults)
    {
        Patterns = patterns;
        _isModelDefaults = isModelDefaults;
        _regexes = [.. patterns.Select(p => new Regex(FnmatchToRegex(p.EndsWith('/') ? p + "*" : p), RegexOptions.CultureInvariant))];
    }

    /// <summary>The given patterns; none given: <paramref name="fallback"/>.</summary>
    public static RepoFilePatterns Of(IReadOnlyList<string>? patterns, RepoFilePatterns fallback)
    {
        if (patterns is null || patterns.Count == 0) return fallback;
        foreach (string p in patterns)
            if (string.IsNullOrWhiteSpace(p)) throw new ArgumentException("an --include pattern is empty.");
        return new RepoFilePatterns(patterns, isModelDefaults: false);
    }

    public static RepoFilePatterns DefaultFor(RepoType type) => type == RepoType.Model ? ModelDefaults : Everything;

    public bool Matches(string path) => _regexes.Any(r => r.IsMatch(path));

    public override string ToString() => string.Join(' ', Patterns);

    /// <summary>
    /// Whether a snapshot of which no file list is known (one an older huggingface-cli made) holds what these patterns
    /// ask for: a file for each pattern given explicitly, or config.json and the weights for the model defaults; and,
    /// either way, every shard that a <c>*.safetensors.index.json</c> there names.
    /// </summary>
    internal bool LooksComplete(IReadOnlySet<string> files, Func<string, string> readFile)
    {
        var matched = files.Where(Matches).ToList();
        if (matched.Count == 0) return false;
        if (_isModelDefaults ? !files.Contains("config.json") || !(files.Contains("model.safetensors") || files.Contains("model.safetensors.index.json"))
                             : !_regexes.All(r => matched.Any(r.IsMatch)))
            return false;
        foreach (string index in matched.Where(f => f.EndsWith(".safetensors.index.json", StringComparison.Ordinal)))
        {
            string folder = index.Contains('/') ? index[..(index.LastIndexOf('/') + 1)] : "";
            if (!ShardsOf(readFile(index)).All(shard => files.Contains(folder + shard))) return false;
        }
        return true;
    }

    static IEnumerable<string> ShardsOf(string indexJson)
    {
        try
        {
            using var doc = JsonDocument.Parse(indexJson);
            return doc.RootElement.TryGetProperty("weight_map", out var map) && map.ValueKind == JsonValueKind.Object
                ? [.. map.EnumerateObject().Select(p => p.Value.GetString() ?? "").Distinct()]
                : [];
        }
        catch (JsonException) { return [""]; } // unreadable: not complete, download it again
    }

    /// <summary>Python's fnmatch.translate: * any run, ? one character, [seq] / [!seq] a set.</summary>
    static string FnmatchToRegex(string pattern)
    {
        var regex = new System.Text.StringBuilder("^");
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '*') regex.Append(".*");
            else if (c == '?') regex.Append('.');
            else if (c == '[' && i + 2 < pattern.Length && pattern.IndexOf(']', i + 2) is int close and > 0)
            {
                string set = pattern[(i + 1)..close];
                regex.Append('[').Append(set.StartsWith('!') ? "^" + Regex.Escape(set[1..]) : Regex.Escape(set)).Append(']');
                i = close;
            }
            else regex.Append(Regex.Escape(c.ToString()));
        }
        return regex.Append("$").ToString();
    }
}
