namespace SpatialMllm.Research.Hub;

/// <summary>
/// One repository's folder in the Hugging Face cache, laid out as huggingface_hub lays it out (file_download.py):
/// <code>
/// HF_HUB_CACHE/models--owner--name/
///   refs/main                      the commit hash the revision pointed to when last resolved
///   blobs/ETAG                     each file's content, named by its ETag (sha256 for LFS files, git blob id otherwise)
///   snapshots/COMMIT/PATH          relative symlinks ../../blobs/ETAG, one folder per commit
///   trees/COMMIT.json              the commit's file list (see <see cref="TreeCache"/>)
/// HF_HUB_CACHE/.locks/models--owner--name/ETAG.lock
/// </code>
/// </summary>
internal sealed class RepoCache(string cacheDir, HubRepository repo)
{
    public string CacheDir { get; } = cacheDir;
    public string Folder { get; } = Path.Combine(cacheDir, repo.CacheFolderName);
    public string LocksFolder { get; } = Path.Combine(cacheDir, ".locks", repo.CacheFolderName);

    public string Snapshot(string commit) => Path.Combine(Folder, "snapshots", commit);
    public string Blob(string etag) => Path.Combine(Folder, "blobs", etag);

    /// <summary>The commit a branch or tag pointed to when last resolved; null when never resolved here.</summary>
    public string? ReadRef(string revision)
    {
        string path = RefPath(revision);
        return File.Exists(path) && File.ReadAllText(path).Trim() is { Length: > 0 } commit ? commit : null;
    }

    /// <summary>Records the commit of a branch or tag, atomically (a reader never sees half a hash).
    /// <paramref name="bestEffort"/>: a cache that cannot be written is no error (a --local-dir download).</summary>
    public void WriteRef(string revision, string commit, bool bestEffort)
    {
        try
        {
            string path = RefPath(revision);
            if (ReadRef(revision) == commit) return;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            string temporary = $"{path}.{Guid.NewGuid():N}.tmp";
            File.WriteAllText(temporary, commit);
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (bestEffort && e is IOException or UnauthorizedAccessException) { }
    }

    string RefPath(string revision) => CheckedPath(Path.Combine(Folder, "refs"), revision, $"revision '{revision}'");

    /// <summary>Marks the cache for backup tools (CACHEDIR.TAG, as huggingface_hub writes it).</summary>
    public void TagCacheDir()
    {
        string tag = Path.Combine(CacheDir, "CACHEDIR.TAG");
        if (File.Exists(tag)) return;
        Directory.CreateDirectory(CacheDir);
        File.WriteAllText(tag, "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by huggingface_hub.\n" +
                               "# For information about cache directory tags, see:\n#\thttps://bford.info/cachedir/\n");
    }

    /// <summary>Links <paramref name="pointer"/> to <paramref name="blob"/> with a relative symlink (the cache survives
    /// being moved); where symlinks cannot be made, a copy.</summary>
    public static void Link(string blob, string pointer)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(pointer)!);
        if (File.Exists(pointer) || new FileInfo(pointer).LinkTarget != null) File.Delete(pointer);
        try { File.CreateSymbolicLink(pointer, Path.GetRelativePath(Path.GetDirectoryName(pointer)!, blob)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { File.Copy(blob, pointer, overwrite: true); }
    }

    /// <summary>Whether a file is there and readable: a symlink counts only when its blob exists.</summary>
    public static bool IsPresent(string path)
    {
        var info = new FileInfo(path);
        return info.Exists && (info.LinkTarget == null || info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: true });
    }

    /// <summary>The files under a folder, as repository paths ('/'-separated, relative), skipping <paramref name="except"/>.</summary>
    public static IReadOnlySet<string> FilesUnder(string folder, string? except = null)
    {
        if (!Directory.Exists(folder)) return new HashSet<string>();
        return Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => except == null || !Path.GetFullPath(f).StartsWith(Path.GetFullPath(except) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            .Where(IsPresent)
            .Select(f => Path.GetRelativePath(folder, f).Replace(Path.DirectorySeparatorChar, '/'))
            .ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>A repository path under <paramref name="root"/>; one that would land outside it (absolute, '..') is refused.</summary>
    public static string CheckedPath(string root, string repoPath, string what)
    {
        string full = Path.GetFullPath(Path.Combine(root, repoPath));
        if (Path.IsPathRooted(repoPath) || !full.StartsWith(Path.GetFullPath(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new HubException($"{what} would be written outside {root}; refused.");
        return full;
    }

    /// <summary>Refuses a listed path that is absolute or climbs out of the snapshot (huggingface_hub's _validate_relative_filename).</summary>
    public static void CheckRelative(string repoPath, HubRepository repo)
    {
        if (repoPath.Length == 0 || repoPath.StartsWith('/') || repoPath.Contains('\\') || repoPath.Split('/').Any(s => s is "" or "." or ".."))
            throw new HubException($"{repo}: the hub lists a file '{repoPath}' that is not a plain relative path; refused.");
    }
}
