using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SpatialMllm.Research.Hub;

namespace SpatialMllm.Research.Tests.Hub;

/// <summary>Downloads from the stand-in hub into a fresh cache per test, with settings passed explicitly (the
/// environment is left alone; <see cref="HubEnvironmentTests"/> covers it).</summary>
public sealed class SnapshotDownloadTests : IDisposable
{
    const string Id = "acme/tiny-model";
    readonly FakeHub _hub = new();
    readonly string _cache = TestPaths.NewTempDir("hub-cache");
    readonly HubRepository _repo = new(Id);

    public void Dispose() => _hub.Dispose();

    HubSettings Settings(string? token = null, bool offline = false) => new(_hub.Endpoint, _cache, token, offline);

    HubSnapshot Download(HubDownloadOptions? options = null, HubSettings? settings = null, HubRepository? repo = null) =>
        SnapshotDownload.Download(repo ?? _repo, options, settings ?? Settings());

    internal static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    static Dictionary<string, byte[]> ModelFiles(int seed = 1) => new()
    {
        ["config.json"] = Encoding.UTF8.GetBytes($$"""{"model_type": "tiny", "seed": {{seed}}}"""),
        ["tokenizer.json"] = Encoding.UTF8.GetBytes("""{"version": "1.0"}"""),
        ["model.safetensors"] = RandomBytes(300_000, seed),
        ["README.md"] = Encoding.UTF8.GetBytes("# tiny"),
        ["optimizer.pt"] = RandomBytes(1000, seed + 100),
    };

    string RepoFolder => Path.Combine(_cache, "models--acme--tiny-model");

    [Fact]
    public void A_fresh_download_lays_out_the_cache_as_huggingface_hub_does_and_a_second_asks_nothing()
    {
        var files = ModelFiles();
        string commit = _hub.AddCommit(Id, files);

        var snapshot = Download();

        Assert.Equal(Path.Combine(RepoFolder, "snapshots", commit), snapshot.Folder);
        Assert.Equal(commit, snapshot.Commit);
        Assert.Equal(commit, File.ReadAllText(Path.Combine(RepoFolder, "refs", "main")));
        // What a model needs, not the README or the optimizer state.
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"], snapshot.Files);
        Assert.Equal(snapshot.Files, snapshot.Downloaded);
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"], Directory.GetFiles(snapshot.Folder).Select(Path.GetFileName).Order());
        foreach (string name in snapshot.Files)
        {
            var served = _hub.File(Id, commit, name);
            // A relative symlink to the blob named by the ETag: the sha256 of an LFS file, the git blob id otherwise.
            Assert.Equal($"../../blobs/{served.Etag}", new FileInfo(Path.Combine(snapshot.Folder, name)).LinkTarget);
            Assert.Equal(served.Content, File.ReadAllBytes(Path.Combine(RepoFolder, "blobs", served.Etag)));
            Assert.Equal(served.Content, File.ReadAllBytes(Path.Combine(snapshot.Folder, name)));
        }
        Assert.Equal(64, _hub.File(Id, commit, "model.safetensors").Etag.Length);
        Assert.Equal(40, _hub.File(Id, commit, "config.json").Etag.Length);
        // The commit's file list, in huggingface_hub's format, with every file of the repository.
        var tree = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoFolder, "trees", commit + ".json")))!;
        Assert.Equal(1, (int)tree["format_version"]!);
        Assert.Equal(5, tree["files"]!.AsObject().Count);
        Assert.Equal(_hub.File(Id, commit, "model.safetensors").Sha256, (string)tree["files"]!["model.safetensors"]!["lfs_sha256"]!);
        Assert.True(File.Exists(Path.Combine(_cache, "CACHEDIR.TAG")));
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoFolder, "blobs"), "*.incomplete"));
        // One listing, then one GET per file (the LFS file through its redirect), no HEAD: the listing has the metadata.
        Assert.Equal(5, _hub.Requests.Count);
        Assert.StartsWith($"GET /api/models/{Id}/revision/main?blobs=true", _hub.Requests[0]);
        Assert.DoesNotContain(_hub.Requests, r => r.StartsWith("HEAD", StringComparison.Ordinal));

        _hub.ClearRequests();
        var again = Download();
        Assert.Equal(snapshot.Folder, again.Folder);
        Assert.Equal(snapshot.Files, again.Files);
        Assert.Empty(again.Downloaded);
        Assert.Empty(_hub.Requests);
        Assert.Equal(snapshot.Folder, HubModels.ResolveFolder(Id, Settings()));
        Assert.Empty(_hub.Requests);
    }

    [Fact]
    public void Include_patterns_choose_the_files_and_a_pattern_matching_none_names_what_the_repo_has()
    {
        _hub.AddCommit(Id, ModelFiles());
        var snapshot = Download(new HubDownloadOptions { Include = ["*.md", "*.pt"] });
        Assert.Equal(["README.md", "optimizer.pt"], snapshot.Files);

        var e = Assert.Throws<HubException>(() => Download(new HubDownloadOptions { Include = ["*.gguf"] }));
        Assert.Contains("*.gguf", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void A_partial_incomplete_blob_is_resumed_with_a_range_request()
    {
        string commit = _hub.AddCommit(Id, ModelFiles());
        var weights = _hub.File(Id, commit, "model.safetensors");
        Directory.CreateDirectory(Path.Combine(RepoFolder, "blobs"));
        string incomplete = Path.Combine(RepoFolder, "blobs", weights.Sha256 + ".incomplete");
        File.WriteAllBytes(incomplete, weights.Content[..100_000]);

        var snapshot = Download(new HubDownloadOptions { Include = ["model.safetensors"] });

        Assert.Contains(_hub.Requests, r => r == $"GET /lfs/{weights.Sha256} Range: bytes=100000-");
        Assert.Equal(200_000, _hub.BytesServed);
        Assert.Equal(weights.Content, File.ReadAllBytes(Path.Combine(snapshot.Folder, "model.safetensors")));
        Assert.False(File.Exists(incomplete));
    }

    [Fact]
    public void A_connection_that_breaks_mid_file_is_resumed_where_it_stopped()
    {
        string commit = _hub.AddCommit(Id, ModelFiles());
        _hub.CutOnce.Add("model.safetensors");
        var weights = _hub.File(Id, commit, "model.safetensors");

        var snapshot = Download(new HubDownloadOptions { Include = ["model.safetensors"] });

        Assert.Equal(weights.Content, File.ReadAllBytes(Path.Combine(snapshot.Folder, "model.safetensors")));
        // The first GET is cut after half its bytes; what arrived of it is kept and the rest asked for.
        Assert.Contains(_hub.Requests, r => Regex.IsMatch(r, $@"^GET /lfs/{weights.Sha256} Range: bytes=[1-9][0-9]*-$"));
    }

    [Fact]
    public void A_file_whose_sha256_does_not_match_is_refused_naming_it_and_nothing_is_kept()
    {
        string commit = _hub.AddCommit(Id, ModelFiles());
        _hub.Corrupted.Add("model.safetensors");

        var e = Assert.Throws<HubException>(() => Download());

        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("checksum mismatch", e.Message);
        Assert.Contains(_hub.File(Id, commit, "model.safetensors").Sha256, e.Message);
        string blobs = Path.Combine(RepoFolder, "blobs");
        Assert.DoesNotContain(Directory.GetFiles(blobs), f => Path.GetFileName(f).StartsWith(_hub.File(Id, commit, "model.safetensors").Sha256, StringComparison.Ordinal));
        Assert.False(File.Exists(Path.Combine(RepoFolder, "snapshots", commit, "model.safetensors")));
    }

    [Fact]
    public void Offline_mode_uses_the_cache_alone_and_says_so_when_a_file_is_not_there()
    {
        string commit = _hub.AddCommit(Id, ModelFiles());
        var noHub = new HubSettings("http://127.0.0.1:9", _cache, Offline: true); // nothing listens there

        var e = Assert.Throws<HubException>(() => SnapshotDownload.Download(_repo, settings: noHub));
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
        Assert.Contains("offline", e.Message);
        Assert.Contains(Id, e.Message);

        var online = Download();
        Assert.Equal(online.Folder, SnapshotDownload.Download(_repo, settings: noHub).Folder);

        // A file asked for that the cached snapshot lacks is named.
        var partial = Assert.Throws<HubException>(() => SnapshotDownload.Download(_repo, new HubDownloadOptions { Include = ["*.pt"] }, noHub));
        Assert.Contains("optimizer.pt", partial.Message);
        Assert.Contains("HF_HUB_OFFLINE", partial.Message);
        Assert.Equal(commit, online.Commit);
    }

    [Fact]
    public void A_gated_repository_needs_the_token_which_goes_as_a_bearer_header()
    {
        _hub.AddCommit(Id, ModelFiles());
        _hub.RequireToken(Id, "hf_secret");

        var anonymous = Assert.Throws<HubException>(() => Download());
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.Status);
        Assert.Contains("401", anonymous.Message);
        Assert.Contains("HF_TOKEN", anonymous.Message);

        var wrong = Assert.Throws<HubException>(() => Download(settings: Settings(token: "hf_wrong")));
        Assert.Contains("not accepted", wrong.Message);

        _hub.ClearRequests();
        var snapshot = Download(settings: Settings(token: "hf_secret"));
        Assert.Equal(3, snapshot.Files.Count);
        Assert.All(_hub.Requests.Where(r => !r.Contains("/lfs/")), r => Assert.EndsWith("auth: hf_secret", r));
    }

    [Fact]
    public void A_missing_repository_revision_or_file_is_a_404_that_says_which()
    {
        _hub.AddCommit(Id, ModelFiles());

        var repo = Assert.Throws<HubException>(() => Download(repo: new HubRepository("acme/nothing")));
        Assert.Equal(HttpStatusCode.NotFound, repo.Status);
        Assert.Contains("no repository acme/nothing", repo.Message);
        Assert.Contains("--repo-type dataset", repo.Message);

        var revision = Assert.Throws<HubException>(() => Download(new HubDownloadOptions { Revision = "v9" }));
        Assert.Contains("no revision 'v9'", revision.Message);

        using var client = new HubClient(Settings());
        var file = Assert.Throws<HubException>(() => client.Head(_repo, "main", "missing.json", CancellationToken.None));
        Assert.Contains("no file 'missing.json'", file.Message);
    }

    [Fact]
    public void A_snapshot_huggingface_cli_made_is_reused_without_any_request()
    {
        // huggingface-cli's layout without trees/ (older versions): refs/main, blobs, snapshot symlinks into blobs.
        var files = ModelFiles();
        string commit = _hub.AddCommit(Id, files);
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(Path.Combine(RepoFolder, "refs")).FullName, "main"), commit);
        string snapshotFolder = Directory.CreateDirectory(Path.Combine(RepoFolder, "snapshots", commit)).FullName;
        Directory.CreateDirectory(Path.Combine(RepoFolder, "blobs"));
        foreach (string name in new[] { "config.json", "model.safetensors" })
        {
            string etag = _hub.File(Id, commit, name).Etag;
            File.WriteAllBytes(Path.Combine(RepoFolder, "blobs", etag), files[name]);
            File.CreateSymbolicLink(Path.Combine(snapshotFolder, name), $"../../blobs/{etag}");
        }

        var snapshot = Download();

        Assert.Equal(snapshotFolder, snapshot.Folder);
        Assert.Equal(["config.json", "model.safetensors"], snapshot.Files);
        Assert.Empty(snapshot.Downloaded);
        Assert.Empty(_hub.Requests);

        // Without its weights the snapshot is incomplete: the hub is asked, the weights linked from their blob, the rest fetched.
        File.Delete(Path.Combine(snapshotFolder, "model.safetensors"));
        var sharded = Download();
        Assert.Equal(["model.safetensors", "tokenizer.json"], sharded.Downloaded);
        Assert.Equal(files["model.safetensors"], File.ReadAllBytes(Path.Combine(snapshotFolder, "model.safetensors")));
    }

    [Fact]
    public void A_dataset_goes_to_datasets_folders_and_endpoints_with_every_file_by_default()
    {
        var files = new Dictionary<string, byte[]>
        {
            ["test.jsonl"] = Encoding.UTF8.GetBytes("{\"id\": 1}\n"),
            ["arkitscenes.zip"] = RandomBytes(5000, 7),
            ["pruned/test.jsonl"] = Encoding.UTF8.GetBytes("{\"id\": 2}\n"),
        };
        string commit = _hub.AddCommit("nyu/bench", files, RepoType.Dataset);

        var snapshot = Download(repo: new HubRepository("nyu/bench", RepoType.Dataset));

        Assert.Equal(Path.Combine(_cache, "datasets--nyu--bench", "snapshots", commit), snapshot.Folder);
        Assert.Equal(["arkitscenes.zip", "pruned/test.jsonl", "test.jsonl"], snapshot.Files);
        foreach (var (name, content) in files) Assert.Equal(content, File.ReadAllBytes(Path.Combine(snapshot.Folder, name)));
        Assert.Equal("../../../blobs/" + _hub.File("nyu/bench", commit, "pruned/test.jsonl", RepoType.Dataset).Etag,
            new FileInfo(Path.Combine(snapshot.Folder, "pruned", "test.jsonl")).LinkTarget);
        Assert.StartsWith("GET /api/datasets/nyu/bench/revision/main", _hub.Requests[0]);
        Assert.Contains(_hub.Requests, r => r.StartsWith("GET /datasets/nyu/bench/resolve/" + commit + "/test.jsonl", StringComparison.Ordinal));
        // The same name as a model is another repository.
        Assert.Throws<HubException>(() => Download(repo: new HubRepository("nyu/bench")));
    }

    [Fact]
    public void A_tag_or_commit_hash_gets_that_commit_and_files_shared_with_another_commit_are_not_fetched_again()
    {
        var v1 = ModelFiles(seed: 1);
        string first = _hub.AddCommit(Id, v1, refName: "v1");
        var v2 = ModelFiles(seed: 2);
        v2["tokenizer.json"] = v1["tokenizer.json"];
        string second = _hub.AddCommit(Id, v2);

        var tagged = Download(new HubDownloadOptions { Revision = "v1" });
        Assert.Equal(first, tagged.Commit);
        Assert.Equal(first, File.ReadAllText(Path.Combine(RepoFolder, "refs", "v1")));
        Assert.Equal(v1["config.json"], File.ReadAllBytes(Path.Combine(tagged.Folder, "config.json")));

        _hub.ClearRequests();
        Assert.Equal(tagged.Folder, Download(new HubDownloadOptions { Revision = first }).Folder);
        Assert.Empty(_hub.Requests);

        var latest = Download(new HubDownloadOptions { Revision = second });
        Assert.Equal(Path.Combine(RepoFolder, "snapshots", second), latest.Folder);
        Assert.StartsWith($"GET /api/models/{Id}/revision/{second}", _hub.Requests[0]);
        Assert.False(File.Exists(Path.Combine(RepoFolder, "refs", second))); // a commit hash is no ref
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"], latest.Downloaded);
        Assert.DoesNotContain(_hub.Requests, r => r.Contains("/tokenizer.json", StringComparison.Ordinal)); // the blob was there
        Assert.Equal(v2["model.safetensors"], File.ReadAllBytes(Path.Combine(latest.Folder, "model.safetensors")));

        // main moves on: the cached ref is used until a refresh asks the hub.
        var mainBefore = Download();
        string third = _hub.AddCommit(Id, ModelFiles(seed: 3));
        Assert.Equal(mainBefore.Commit, Download().Commit);
        var refreshed = Download(new HubDownloadOptions { Refresh = true });
        Assert.Equal(third, refreshed.Commit);
        Assert.Equal(third, File.ReadAllText(Path.Combine(RepoFolder, "refs", "main")));

        var (parsed, revision) = HubRepository.Parse($"{Id}@v1");
        Assert.Equal(_repo, parsed);
        Assert.Equal("v1", revision);
    }

    [Fact]
    public void A_listing_without_file_metadata_is_completed_by_head_requests()
    {
        string commit = _hub.AddCommit(Id, ModelFiles());
        _hub.ListNamesOnly = true;

        var snapshot = Download();

        Assert.Equal(3, _hub.Requests.Count(r => r.StartsWith("HEAD", StringComparison.Ordinal)));
        var weights = _hub.File(Id, commit, "model.safetensors");
        Assert.Equal($"../../blobs/{weights.Sha256}", new FileInfo(Path.Combine(snapshot.Folder, "model.safetensors")).LinkTarget);
        Assert.Equal(weights.Content, File.ReadAllBytes(Path.Combine(snapshot.Folder, "model.safetensors")));
        Assert.False(File.Exists(Path.Combine(RepoFolder, "trees", commit + ".json"))); // an incomplete list is not kept
    }

    [Fact]
    public void A_local_dir_gets_plain_files_with_huggingface_cli_metadata_and_is_not_downloaded_twice()
    {
        string commit = _hub.AddCommit(Id, ModelFiles());
        string dir = Path.Combine(TestPaths.NewTempDir("hub-local"), "model");

        var snapshot = Download(new HubDownloadOptions { LocalDir = dir });

        Assert.Equal(Path.GetFullPath(dir), snapshot.Folder);
        var config = new FileInfo(Path.Combine(dir, "config.json"));
        Assert.Null(config.LinkTarget);
        Assert.Equal(_hub.File(Id, commit, "config.json").Content, File.ReadAllBytes(config.FullName));
        var metadata = File.ReadAllLines(Path.Combine(dir, ".cache", "huggingface", "download", "model.safetensors.metadata"));
        Assert.Equal(commit, metadata[0]);
        Assert.Equal(_hub.File(Id, commit, "model.safetensors").Sha256, metadata[1]);
        Assert.False(Directory.Exists(Path.Combine(RepoFolder, "blobs")));

        _hub.ClearRequests();
        Assert.Empty(Download(new HubDownloadOptions { LocalDir = dir }).Downloaded);
        Assert.Empty(_hub.Requests);
    }

    [Fact]
    public void An_existing_folder_is_returned_unchanged_and_a_missing_one_is_tried_as_a_repository()
    {
        string folder = TestPaths.NewTempDir("hub-folder");
        Assert.Equal(folder, HubModels.ResolveFolder(folder, Settings()));
        Assert.Equal("./not/there", HubModels.ResolveFolder("./not/there", Settings())); // not owner/name: left to the loader
        Assert.Empty(_hub.Requests);

        var e = Assert.Throws<HubException>(() => HubModels.ResolveFolder("checkpoints/absent", Settings()));
        Assert.Contains("no folder 'checkpoints/absent'", e.Message);
        Assert.Contains("no repository checkpoints/absent", e.Message);
    }
}
