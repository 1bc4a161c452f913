using System.CommandLine;
using System.Diagnostics;
using SpatialMllm.Research.Hub;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm download owner/name</c>: a model's (or dataset's) files into the Hugging Face cache, as
/// <c>huggingface-cli download</c> does: what is cached is reused, the rest downloaded, resumably. Progress goes to
/// stderr; the last line of stdout is the snapshot folder.
/// </summary>
internal static class DownloadCommand
{
    public static Command Create()
    {
        var repoId = new Argument<string>("REPO") { Description = "owner/name, optionally owner/name@revision." };
        var revision = new Option<string?>("--revision") { Description = "A branch, tag or commit hash (default: main)." };
        var repoType = new Option<string>("--repo-type") { Description = "model (default) or dataset.", DefaultValueFactory = _ => "model" }
            .AcceptOnlyFromAmong("model", "dataset");
        var include = new Option<string[]>("--include")
        {
            Description = "Download only the files matching this pattern (shell-style, on the path in the repository; repeatable). " +
                          "Default: a model's config, tokenizer, processor, generation config, chat template and safetensors; every file of a dataset.",
        };
        var localDir = new Option<string?>("--local-dir") { Description = "Put the files in this folder instead of the cache (as huggingface-cli --local-dir)." };
        var refresh = new Option<bool>("--refresh") { Description = "Ask the hub where the branch or tag points now (a revision already in the cache is otherwise used as it is)." };
        var command = new Command("download", "Download a model or dataset from the Hugging Face hub into its cache (HF_HOME, HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE as huggingface_hub reads them).")
        {
            repoId, revision, repoType, include, localDir, refresh,
        };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            var type = parse.GetValue(repoType) == "dataset" ? RepoType.Dataset : RepoType.Model;
            var (repo, revisionInId) = HubRepository.Parse(parse.GetValue(repoId)!, type);
            if (revisionInId != null && parse.GetValue(revision) is { } given && given != revisionInId)
                throw new ArgumentException($"two revisions: '{revisionInId}' in {parse.GetValue(repoId)} and --revision {given}.");
            var options = new HubDownloadOptions
            {
                Revision = revisionInId ?? parse.GetValue(revision),
                Include = parse.GetValue(include),
                LocalDir = parse.GetValue(localDir),
                Refresh = parse.GetValue(refresh),
                Progress = new ProgressLines(parse.InvocationConfiguration.Error),
            };
            var snapshot = SnapshotDownload.Download(repo, options);
            output.WriteLine($"{repo}@{options.Revision ?? HubRepository.DefaultRevision} (commit {snapshot.Commit}): {snapshot.Files.Count} file(s), " +
                             $"{snapshot.Downloaded.Count} downloaded, {snapshot.Files.Count - snapshot.Downloaded.Count} already there");
            output.WriteLine(snapshot.Folder);
            return CliSupport.Ok;
        }));
        return command;
    }

    /// <summary>A line when a file starts, every few seconds while it downloads, and when it is in place.</summary>
    sealed class ProgressLines(TextWriter writer) : IProgress<HubDownloadProgress>
    {
        static readonly TimeSpan Every = TimeSpan.FromSeconds(5);
        readonly Stopwatch _sinceLine = new();
        string? _file;

        public void Report(HubDownloadProgress p)
        {
            if (p.File != _file)
            {
                _file = p.File;
                writer.WriteLine($"[{p.Index + 1}/{p.Count}] {p.File} ({Size(p.BytesTotal)}" + (p.BytesDone > 0 ? $", resuming at {Size(p.BytesDone)})" : ")"));
                _sinceLine.Restart();
            }
            if (p.Complete) writer.WriteLine("      done");
            else if (_sinceLine.Elapsed >= Every)
            {
                writer.WriteLine($"      {Size(p.BytesDone)} of {Size(p.BytesTotal)} ({100.0 * p.BytesDone / Math.Max(1, p.BytesTotal):F0}%)");
                _sinceLine.Restart();
            }
        }

        static string Size(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F2} GiB"
            : bytes >= 1 << 20 ? $"{bytes / (double)(1 << 20):F1} MiB" : $"{bytes:N0} B";
    }
}
