namespace SpatialMllm.Research.Hub;

/// <summary>A model folder from a folder path or a repository id, as transformers' from_pretrained takes either.</summary>
public static class HubModels
{
    /// <summary>
    /// An existing folder, or anything that is not <c>owner/name[@revision]</c>, unchanged; otherwise the repository's
    /// snapshot folder in the Hugging Face cache, with what a model needs (<see cref="RepoFilePatterns.ModelDefaults"/>)
    /// downloaded if missing (progress on stderr). Settings come from the environment (<see cref="HubSettings.FromEnvironment()"/>).
    /// </summary>
    public static string ResolveFolder(string folderOrRepoId) => ResolveFolder(folderOrRepoId, settings: null);

    public static string ResolveFolder(string folderOrRepoId, HubSettings? settings, IProgress<HubDownloadProgress>? progress = null)
    {
        if (Directory.Exists(folderOrRepoId) || !HubRepository.LooksLikeRepoId(folderOrRepoId)) return folderOrRepoId;
        var (repo, revision) = HubRepository.Parse(folderOrRepoId);
        try
        {
            var options = new HubDownloadOptions { Revision = revision, Progress = progress ?? new FileLines(Console.Error) };
            return SnapshotDownload.Download(repo, options, settings).Folder;
        }
        catch (HubException e)
        {
            throw new HubException($"there is no folder '{folderOrRepoId}', so it was taken as a repository id: {e.Message}", e.Status, e);
        }
    }

    /// <summary>One line when a file starts and one when it is in place.</summary>
    sealed class FileLines(TextWriter writer) : IProgress<HubDownloadProgress>
    {
        string? _started;

        public void Report(HubDownloadProgress p)
        {
            if (p.File != _started)
            {
                _started = p.File;
                writer.WriteLine($"downloading {p.File} ({p.Index + 1} of {p.Count}, {p.BytesTotal:N0} bytes)");
            }
            if (p.Complete) writer.WriteLine($"downloaded {p.File}");
        }
    }
}
