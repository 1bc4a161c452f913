using System.Text.Json;
using System.Text.Json.Nodes;

namespace SpatialMllm.Research.Hub;

/// <summary>
/// One file of a repository at a commit, as the hub lists it: its size, its git blob id and, for a file stored with
/// Git LFS (the weights), the sha256 of its content. The cache names the file's blob by its ETag: the sha256 for an
/// LFS file, the git blob id otherwise.
/// </summary>
public sealed record RepoFile(string Path, long Size, string BlobId, string? Sha256 = null)
{
    public string Etag => Sha256 ?? BlobId;
}

/// <summary>
/// The file list of a commit, kept on disk as huggingface_hub keeps it (_tree_cache.py):
/// <c>trees/COMMIT.json</c> under the repository's cache folder (or a local dir's <c>.cache/huggingface</c>),
/// <c>{"format_version": 1, "files": {path: {size, blob_id, lfs_sha256?, lfs_size?}}}</c>. A commit never changes, so
/// neither does its list: with it, a snapshot is known complete without asking the hub.
/// </summary>
internal static class TreeCache
{
    const int FormatVersion = 1;

    static string PathFor(string treeCacheFolder, string commit) => System.IO.Path.Combine(treeCacheFolder, "trees", commit + ".json");

    /// <summary>The cached list; null when none is there or it is unreadable (then the hub is asked again).</summary>
    public static IReadOnlyList<RepoFile>? Read(string treeCacheFolder, string commit)
    {
        string path = PathFor(treeCacheFolder, commit);
        if (!File.Exists(path)) return null;
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            if ((int?)root["format_version"] != FormatVersion) return null;
            return [.. root["files"]!.AsObject().Select(kv => new RepoFile(kv.Key,
                (long?)kv.Value!["lfs_size"] ?? (long)kv.Value!["size"]!, (string)kv.Value["blob_id"]!, (string?)kv.Value["lfs_sha256"]))];
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException or IOException)
        {
            return null;
        }
    }

    public static void Write(string treeCacheFolder, string commit, IReadOnlyList<RepoFile> files)
    {
        var entries = new JsonObject();
        foreach (var file in files.OrderBy(f => f.Path, StringComparer.Ordinal))
        {
            var entry = new JsonObject { ["size"] = file.Size, ["blob_id"] = file.BlobId };
            if (file.Sha256 != null)
            {
                entry["lfs_sha256"] = file.Sha256;
                entry["lfs_size"] = file.Size;
            }
            entries[file.Path] = entry;
        }
        string path = PathFor(treeCacheFolder, commit);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        string temporary = $"{path}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temporary, new JsonObject { ["format_version"] = FormatVersion, ["files"] = entries }
            .ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(temporary, path, overwrite: true); // readers never see half a list
    }
}
