using System.Net;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace SpatialMllm.Research.Hub;

/// <summary>What <see cref="SnapshotDownload.Download"/> asks for; all optional.</summary>
public sealed record HubDownloadOptions
{
    /// <summary>A branch, tag or commit hash; null: main.</summary>
    public string? Revision { get; init; }

    /// <summary>Shell-style patterns of the files to download (see <see cref="RepoFilePatterns"/>); null or empty:
    /// what a model needs (<see cref="RepoFilePatterns.ModelDefaults"/>), or every file of a dataset.</summary>
    public IReadOnlyList<string>? Include { get; init; }

    /// <summary>Download into this folder as huggingface-cli's --local-dir does (plain files, metadata under
    /// <c>.cache/huggingface/</c>) instead of the cache's snapshot folder.</summary>
    public string? LocalDir { get; init; }

    /// <summary>Ask the hub which commit the branch or tag points to now, even when the cache knows one (a cached
    /// revision is otherwise used as it is, without any request).</summary>
    public bool Refresh { get; init; }

    public IProgress<HubDownloadProgress>? Progress { get; init; }
}

/// <summary>Progress of one file: reported when it starts, as its bytes arrive, and once checked and in place (<paramref name="Complete"/>).</summary>
/// <param name="Index">0-based among the <paramref name="Count"/> files this call downloads.</param>
public sealed record HubDownloadProgress(string File, int Index, int Count, long BytesDone, long BytesTotal, bool Complete = false);

/// <summary>A revision's files on disk.</summary>
/// <param name="Folder">The snapshot folder (<c>…/models--owner--name/snapshots/COMMIT</c>) or the local dir.</param>
/// <param name="Files">The repository paths of the files asked for, all present in <paramref name="Folder"/>.</param>
/// <param name="Downloaded">Those of them this call fetched from the hub; empty when the cache had everything.</param>
public sealed record HubSnapshot(HubRepository Repository, string Commit, string Folder, IReadOnlyList<string> Files, IReadOnlyList<string> Downloaded);

/// <summary>
/// huggingface_hub's snapshot_download: the files of a revision, in the Hugging Face cache layout, downloaded when
/// missing. A revision whose commit and file list the cache already knows is answered from disk without any request,
/// and so is a snapshot that huggingface-cli made (symlinks into <c>blobs/</c>). Otherwise the hub lists the revision's
/// files (<c>GET /api/models/ID/revision/REV</c>), and each missing file is fetched
/// (<c>GET /ID/resolve/COMMIT/FILE</c>) into <c>blobs/ETAG.incomplete</c> — resumed with a Range request after an
/// interruption — checked against its size and, for an LFS file, its sha256, then moved to <c>blobs/ETAG</c> and
/// linked from <c>snapshots/COMMIT/FILE</c>.
/// </summary>
public static partial class SnapshotDownload
{
    const int MaxAttemptsPerFile = 5;

    /// <param name="settings">Null: from the environment (<see cref="HubSettings.FromEnvironment()"/>).</param>
    public static HubSnapshot Download(HubRepository repo, HubDownloadOptions? options = null, HubSettings? settings = null,
        CancellationToken cancel = default)
    {
        options ??= new HubDownloadOptions();
        settings ??= HubSettings.FromEnvironment();
        string revision = options.Revision ?? HubRepository.DefaultRevision;
        var patterns = RepoFilePatterns.Of(options.Include, RepoFilePatterns.DefaultFor(repo.Type));
        var cache = new RepoCache(settings.CacheDir, repo);
        SnapshotTarget target = options.LocalDir is { } dir ? new LocalDirTarget(dir) : new CacheTarget(cache);

        string? commit = IsCommitHash(revision) ? revision : options.Refresh ? null : cache.ReadRef(revision);
        string? incomplete = null;
        if (commit != null)
        {
            var (cached, missing) = FromDisk(repo, commit, target, patterns);
            if (cached != null) return cached;
            incomplete = missing;
        }
        if (settings.Offline)
            throw new HubException(commit == null
                ? $"{repo}@{revision} is not in the cache ({cache.Folder}) and the hub is not asked: HF_HUB_OFFLINE is set (offline mode). " +
                  "Download it once with network access (`spatial-mllm download`), or unset HF_HUB_OFFLINE."
                : $"{repo}@{revision}: the cached snapshot {target.Folder(commit)} is incomplete ({incomplete}) and the hub is not asked: " +
                  "HF_HUB_OFFLINE is set (offline mode). Download it once with network access, or unset HF_HUB_OFFLINE.");

        using var client = new HubClient(settings);
        var (resolved, listed, withoutMetadata) = client.GetRevision(repo, revision, cancel);
        commit = resolved;
        if (revision != commit) cache.WriteRef(revision, commit, bestEffort: options.LocalDir != null);
        // The hub lists every file's blob id and size; a file it does not describe is asked for with a HEAD request.
        var files = listed.Concat(withoutMetadata.Where(patterns.Matches).Select(path => client.Head(repo, commit, path, cancel))).ToList();
        if (withoutMetadata.Count == 0) TreeCache.Write(target.TreeCacheFolder, commit, files);

        var wanted = files.Where(f => patterns.Matches(f.Path)).OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
        foreach (var file in wanted) RepoCache.CheckRelative(file.Path, repo);
        if (wanted.Count == 0)
        {
            var all = listed.Select(f => f.Path).Concat(withoutMetadata).Order(StringComparer.Ordinal).ToList();
            throw new HubException($"{repo}@{revision}: none of its {all.Count} files matches {patterns} " +
                                   $"(it has {string.Join(", ", all.Take(12))}{(all.Count > 12 ? ", …" : "")}).");
        }
        var toFetch = wanted.Where(f => !target.Has(commit, f)).ToList();
        for (int i = 0; i < toFetch.Count; i++)
            Fetch(client, repo, commit, toFetch[i], target, i, toFetch.Count, options.Progress, cancel);
        return new HubSnapshot(repo, commit, target.Folder(commit), [.. wanted.Select(f => f.Path)], [.. toFetch.Select(f => f.Path)]);
    }

    /// <summary>The snapshot from disk alone when it holds what is asked for; otherwise what it lacks, for messages.</summary>
    static (HubSnapshot? Snapshot, string Missing) FromDisk(HubRepository repo, string commit, SnapshotTarget target, RepoFilePatterns patterns)
    {
        string folder = target.Folder(commit);
        if (TreeCache.Read(target.TreeCacheFolder, commit) is { } listing)
        {
            var wanted = listing.Where(f => patterns.Matches(f.Path)).ToList();
            var missing = wanted.Where(f => !target.Has(commit, f)).Select(f => f.Path).ToList();
            if (wanted.Count > 0 && missing.Count == 0)
                return (new HubSnapshot(repo, commit, folder, [.. wanted.Select(f => f.Path).Order(StringComparer.Ordinal)], []), "");
            return (null, wanted.Count == 0 ? $"no file matches {patterns}" : $"missing {string.Join(", ", missing.Take(5))}{(missing.Count > 5 ? ", …" : "")}");
        }
        // No file list (an older huggingface-cli, or a copy): judge by what is there.
        var present = target.PresentFiles(commit);
        if (patterns.LooksComplete(present, path => File.ReadAllText(Path.Combine(folder, path))))
            return (new HubSnapshot(repo, commit, folder, [.. present.Where(patterns.Matches).Order(StringComparer.Ordinal)], []), "");
        return (null, present.Count == 0 ? "no files" : $"no file list, and the files there do not cover {patterns}");
    }

    static void Fetch(HubClient client, HubRepository repo, string commit, RepoFile file, SnapshotTarget target, int index, int count,
        IProgress<HubDownloadProgress>? progress, CancellationToken cancel)
    {
        using var held = FileLock.Acquire(target.LockPath(file), cancel);
        // Another process may have finished it, or the blob may be there for another revision.
        if (target.Has(commit, file) || target.TryReuse(commit, file)) return;
        string incomplete = target.IncompletePath(file);
        DownloadTo(incomplete, client, repo, commit, file, p => progress?.Report(new HubDownloadProgress(file.Path, index, count, p, file.Size)), cancel);
        target.Complete(commit, file, incomplete);
        progress?.Report(new HubDownloadProgress(file.Path, index, count, file.Size, file.Size, Complete: true));
    }

    /// <summary>Fetches <paramref name="file"/> into <paramref name="incomplete"/>, continuing what an earlier attempt
    /// left there, and checks its size and sha256. A broken connection is resumed where it stopped (up to 5 attempts).</summary>
    static void DownloadTo(string incomplete, HubClient client, HubRepository repo, string commit, RepoFile file, Action<long> progress,
        CancellationToken cancel)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(incomplete)!);
        using var sha256 = file.Sha256 != null ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
        long have;
        using (var output = new FileStream(incomplete, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1 << 20))
        {
            have = output.Length <= file.Size ? output.Length : 0;
            output.SetLength(have);
            if (sha256 != null) HashPrefix(output, have, sha256);
            progress(have);
            var buffer = new byte[1 << 20];
            Exception? broken = null;
            for (int attempt = 1; have < file.Size || attempt == 1 && file.Size == 0; attempt++)
            {
                try
                {
                    using var response = client.GetContent(repo, commit, file.Path, have, cancel);
                    if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable || have > 0 && response.StatusCode == HttpStatusCode.OK)
                    {
                        // The server ignored or refused the range: start over (huggingface_hub's http_get does the same).
                        Restart(output, sha256);
                        have = 0;
                        if (response.StatusCode != HttpStatusCode.OK) continue;
                    }
                    using var body = response.Content.ReadAsStream(cancel);
                    using var stalled = CancellationTokenSource.CreateLinkedTokenSource(cancel);
                    using var abortRead = stalled.Token.Register(body.Dispose);
                    stalled.CancelAfter(HubClient.ReadTimeout);
                    for (int read; (read = body.Read(buffer)) > 0; stalled.CancelAfter(HubClient.ReadTimeout))
                    {
                        if (have + read > file.Size)
                            throw new HubException($"{repo}@{commit}: {file.Path}: the hub sent more than the {file.Size} bytes it lists.");
                        output.Write(buffer, 0, read);
                        sha256?.AppendData(buffer, 0, read);
                        have += read;
                        progress(have);
                    }
                    if (file.Size == 0) break;
                }
                catch (Exception e) when (e is IOException or HttpRequestException or ObjectDisposedException && e is not HubException
                                          && !cancel.IsCancellationRequested)
                {
                    broken = e; // the connection broke or stalled: the next attempt asks for the rest
                }
                cancel.ThrowIfCancellationRequested();
                if (have < file.Size && attempt == MaxAttemptsPerFile)
                    throw new HubException($"{repo}@{commit}: {file.Path}: the download stopped at {have} of {file.Size} bytes after {attempt} attempts" +
                                           (broken != null ? $" ({broken.Message})" : "") + $"; run it again to resume from {incomplete}.", inner: broken);
            }
        }
        if (sha256 != null)
        {
            string actual = Convert.ToHexStringLower(sha256.GetHashAndReset());
            if (!string.Equals(actual, file.Sha256, StringComparison.OrdinalIgnoreCase))
            {
                File.Delete(incomplete);
                throw new HubException($"{repo}@{commit}: {file.Path}: checksum mismatch — the {file.Size} bytes downloaded have sha256 {actual}, " +
                                       $"the hub lists {file.Sha256}. The file was discarded; run the download again.");
            }
        }
    }

    static void HashPrefix(FileStream stream, long length, IncrementalHash hash)
    {
        stream.Position = 0;
        var buffer = new byte[1 << 20];
        for (long left = length; left > 0;)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (read == 0) throw new IOException($"{stream.Name} ended while being read.");
            hash.AppendData(buffer, 0, read);
            left -= read;
        }
    }

    static void Restart(FileStream output, IncrementalHash? hash)
    {
        output.SetLength(0);
        output.Position = 0;
        hash?.GetHashAndReset();
    }

    static bool IsCommitHash(string revision) => CommitHash().IsMatch(revision);

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitHash();
}
