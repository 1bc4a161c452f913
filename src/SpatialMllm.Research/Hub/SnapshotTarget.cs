using System.Globalization;

namespace SpatialMllm.Research.Hub;

/// <summary>Where a download puts a revision's files: the cache's snapshot folder, or a local dir.</summary>
internal abstract class SnapshotTarget
{
    public abstract string Folder(string commit);

    /// <summary>The folder whose <c>trees/</c> keeps the commits' file lists.</summary>
    public abstract string TreeCacheFolder { get; }

    /// <summary>Whether this version of <paramref name="file"/> is in place.</summary>
    public abstract bool Has(string commit, RepoFile file);

    /// <summary>The files in the folder, as repository paths.</summary>
    public abstract IReadOnlySet<string> PresentFiles(string commit);

    public abstract string LockPath(RepoFile file);
    public abstract string IncompletePath(RepoFile file);

    /// <summary>Puts the file in place from what is already on disk, if it is there; false when it must be downloaded.</summary>
    public abstract bool TryReuse(string commit, RepoFile file);

    /// <summary>Moves the complete download into place.</summary>
    public abstract void Complete(string commit, RepoFile file, string incomplete);
}

/// <summary>The cache: content in <c>blobs/ETAG</c>, shared by every revision that has it, linked from <c>snapshots/COMMIT/</c>.</summary>
internal sealed class CacheTarget(RepoCache cache) : SnapshotTarget
{
    public override string Folder(string commit) => cache.Snapshot(commit);
    public override string TreeCacheFolder => cache.Folder;
    string Pointer(string commit, RepoFile file) => RepoCache.CheckedPath(cache.Snapshot(commit), file.Path, $"the file '{file.Path}'");
    public override bool Has(string commit, RepoFile file) => RepoCache.IsPresent(Pointer(commit, file));
    public override IReadOnlySet<string> PresentFiles(string commit) => RepoCache.FilesUnder(cache.Snapshot(commit));
    public override string LockPath(RepoFile file) => Path.Combine(cache.LocksFolder, file.Etag + ".lock");
    public override string IncompletePath(RepoFile file) => cache.Blob(file.Etag) + ".incomplete";

    public override bool TryReuse(string commit, RepoFile file)
    {
        if (!File.Exists(cache.Blob(file.Etag))) return false;
        RepoCache.Link(cache.Blob(file.Etag), Pointer(commit, file));
        return true;
    }

    public override void Complete(string commit, RepoFile file, string incomplete)
    {
        cache.TagCacheDir();
        File.Move(incomplete, cache.Blob(file.Etag), overwrite: true);
        RepoCache.Link(cache.Blob(file.Etag), Pointer(commit, file));
    }
}

/// <summary>
/// A plain folder, as huggingface-cli's <c>--local-dir</c> fills it: the files themselves, and for each
/// <c>.cache/huggingface/download/PATH.metadata</c> (commit, ETag and time, one a line) that says which version it is.
/// </summary>
internal sealed class LocalDirTarget(string dir) : SnapshotTarget
{
    readonly string _dir = Path.GetFullPath(dir);
    string HuggingFaceFolder => Path.Combine(_dir, ".cache", "huggingface");
    string DownloadFolder => Path.Combine(HuggingFaceFolder, "download");

    public override string Folder(string commit) => _dir;
    public override string TreeCacheFolder => HuggingFaceFolder;
    string FilePath(RepoFile file) => RepoCache.CheckedPath(_dir, file.Path, $"the file '{file.Path}'");
    string MetadataPath(RepoFile file) => RepoCache.CheckedPath(DownloadFolder, file.Path + ".metadata", $"the file '{file.Path}'");

    public override bool Has(string commit, RepoFile file)
    {
        string path = FilePath(file), metadata = MetadataPath(file);
        return File.Exists(path) && new FileInfo(path).Length == file.Size && File.Exists(metadata)
               && File.ReadLines(metadata).Skip(1).FirstOrDefault() == file.Etag;
    }

    public override IReadOnlySet<string> PresentFiles(string commit) => RepoCache.FilesUnder(_dir, except: Path.Combine(_dir, ".cache"));
    public override string LockPath(RepoFile file) => RepoCache.CheckedPath(DownloadFolder, file.Path + ".lock", $"the file '{file.Path}'");
    public override string IncompletePath(RepoFile file) => RepoCache.CheckedPath(DownloadFolder, $"{file.Path}.{file.Etag}.incomplete", $"the file '{file.Path}'");
    public override bool TryReuse(string commit, RepoFile file) => false;

    public override void Complete(string commit, RepoFile file, string incomplete)
    {
        string path = FilePath(file);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.Move(incomplete, path, overwrite: true);
        string metadata = MetadataPath(file);
        Directory.CreateDirectory(Path.GetDirectoryName(metadata)!);
        double now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        File.WriteAllText(metadata, $"{commit}\n{file.Etag}\n{now.ToString("F3", CultureInfo.InvariantCulture)}\n");
    }
}

/// <summary>
/// An exclusive lock on a file (an advisory lock that the system drops when its process ends), so that two processes
/// never download the same blob at once: the second waits for the first and then finds the file in place.
/// </summary>
internal sealed class FileLock : IDisposable
{
    readonly FileStream _stream;
    FileLock(FileStream stream) => _stream = stream;

    public static FileLock Acquire(string path, CancellationToken cancel)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        while (true)
        {
            try { return new FileLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)); }
            catch (IOException e) when (IsHeldByAnother(e))
            {
                if (cancel.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(500))) cancel.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>The failure is another holder's lock (flock's EWOULDBLOCK on Linux, a sharing violation on Windows),
    /// not a problem that waiting cannot cure.</summary>
    static bool IsHeldByAnother(IOException e) => e.HResult is 11 or unchecked((int)0x80070020);

    public void Dispose() => _stream.Dispose();
}
