using System.Text.RegularExpressions;

namespace SpatialMllm.Research.Hub;

/// <summary>The kinds of Hugging Face repository this library downloads from.</summary>
public enum RepoType
{
    Model,
    Dataset,
}

/// <summary>
/// A repository on the Hugging Face hub, <c>owner/name</c>, as huggingface_hub names it on the hub (URL paths) and on
/// disk (<c>models--owner--name</c> in the cache).
/// </summary>
public sealed partial record HubRepository
{
    public const string DefaultRevision = "main";

    public string Id { get; }
    public RepoType Type { get; }

    public HubRepository(string id, RepoType type = RepoType.Model)
    {
        if (!IsRepoId(id))
            throw new ArgumentException($"'{id}' is not a repository id: expected owner/name (letters, digits, '-', '_', '.'; no '--' or '..').");
        Id = id;
        Type = type;
    }

    /// <summary>Parses <c>owner/name</c> or <c>owner/name@revision</c>; the revision is null when not given.</summary>
    public static (HubRepository Repository, string? Revision) Parse(string text, RepoType type = RepoType.Model)
    {
        int at = text.IndexOf('@');
        return at < 0 ? (new HubRepository(text, type), null)
            : at == text.Length - 1 ? throw new ArgumentException($"'{text}': nothing after '@' (expected owner/name@revision).")
            : (new HubRepository(text[..at], type), text[(at + 1)..]);
    }

    /// <summary>Whether <paramref name="text"/> has the shape of <c>owner/name</c> or <c>owner/name@revision</c>
    /// (huggingface_hub's validate_repo_id, with the owner required).</summary>
    public static bool LooksLikeRepoId(string text)
    {
        int at = text.IndexOf('@');
        return IsRepoId(at < 0 ? text : text[..at]) && at != text.Length - 1;
    }

    static bool IsRepoId(string id) =>
        id.Length <= 96 && RepoIdPattern().IsMatch(id) && !id.Contains("--", StringComparison.Ordinal) && !id.Contains("..", StringComparison.Ordinal);

    [GeneratedRegex(@"^[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?/[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?$")]
    private static partial Regex RepoIdPattern();

    /// <summary>"models" or "datasets": the cache folder's prefix and the API's path segment.</summary>
    string Plural => Type == RepoType.Dataset ? "datasets" : "models";

    /// <summary>The repository's folder in the cache: <c>models--owner--name</c> (huggingface_hub's repo_folder_name).</summary>
    public string CacheFolderName => $"{Plural}--{Id.Replace("/", "--", StringComparison.Ordinal)}";

    /// <summary>The revision's metadata with its file list (huggingface_hub's repo_info with files_metadata).</summary>
    internal string RevisionApiPath(string revision) => $"api/{Plural}/{Id}/revision/{Uri.EscapeDataString(revision)}?blobs=true";

    /// <summary>A file at a revision (huggingface_hub's hf_hub_url): <c>owner/name/resolve/REV/FILE</c>, datasets under <c>datasets/</c>.</summary>
    internal string ResolvePath(string revision, string file) =>
        $"{(Type == RepoType.Dataset ? "datasets/" : "")}{Id}/resolve/{Uri.EscapeDataString(revision)}/{string.Join('/', file.Split('/').Select(Uri.EscapeDataString))}";

    /// <summary>The repository's page on the hub, for messages.</summary>
    internal string PageUrl(string endpoint) => $"{endpoint}/{(Type == RepoType.Dataset ? "datasets/" : "")}{Id}";

    public override string ToString() => Type == RepoType.Dataset ? $"dataset {Id}" : Id;
}
