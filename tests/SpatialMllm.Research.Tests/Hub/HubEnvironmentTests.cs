using SpatialMllm.Research.Hub;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Tests.Evaluation;
using TorchSharp;

using SpatialMllm.Research.Tests.Cli;

namespace SpatialMllm.Research.Tests.Hub;

/// <summary>Tests that set the process's HF_* variables (as a user's shell does): run alone, never beside another test.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HubEnvironmentCollection
{
    public const string Name = "Hub environment";
}

/// <summary>The tiny checkpoint on the stand-in hub as <c>acme/tiny-spatial</c>, with HF_ENDPOINT and HF_HOME pointing
/// at the hub and a fresh cache while the tests of this class run.</summary>
public sealed class TinyCheckpointOnHub : IDisposable
{
    public const string Id = "acme/tiny-spatial";
    static readonly string[] Variables =
    [
        "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    ];

    readonly Dictionary<string, string?> _saved = Variables.ToDictionary(v => v, Environment.GetEnvironmentVariable);

    internal FakeHub Hub { get; } = new();
    public string LocalFolder { get; } = TestPaths.NewTempDir("hub-tiny-source");
    public string Home { get; } = TestPaths.NewTempDir("hub-home");
    public string Commit { get; }
    public string Snapshot => Path.Combine(Home, "hub", "models--acme--tiny-spatial", "snapshots", Commit);

    public TinyCheckpointOnHub()
    {
        TinyCheckpoint.Create(LocalFolder);
        Commit = Hub.AddCommit(Id, Directory.GetFiles(LocalFolder).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes));
        foreach (string variable in Variables) Environment.SetEnvironmentVariable(variable, null);
        Environment.SetEnvironmentVariable("HF_ENDPOINT", Hub.Endpoint);
        Environment.SetEnvironmentVariable("HF_HOME", Home);
    }

    public void Dispose()
    {
        foreach (var (variable, value) in _saved) Environment.SetEnvironmentVariable(variable, value);
        Hub.Dispose();
    }
}

[Collection(HubEnvironmentCollection.Name)]
public sealed class HubEnvironmentTests(TinyCheckpointOnHub hub) : IClassFixture<TinyCheckpointOnHub>
{
    [Fact]
    public void Load_by_repository_id_downloads_into_HF_HOME_and_loads_the_same_weights_as_the_folder()
    {
        using var model = SpatialMllmModel.Load(TinyCheckpointOnHub.Id, torch.CPU);
        using var reference = SpatialMllmModel.Load(hub.LocalFolder, torch.CPU);

        Assert.Equal(hub.Snapshot, model.Folder);
        Assert.Empty(model.LoadReport!.Missing);
        Assert.Equal(reference.LoadReport!.Loaded, model.LoadReport.Loaded);
        var expected = reference.Components().SelectMany(c => c.Module.state_dict().Select(kv => (c.Prefix + kv.Key, kv.Value))).ToDictionary();
        foreach (var (prefix, module) in model.Components())
            foreach (var (key, tensor) in module.state_dict())
                Assert.True(tensor.allclose(expected[prefix + key], rtol: 0, atol: 0), $"{prefix}{key} differs from the folder's");

        hub.Hub.ClearRequests();
        using var again = SpatialMllmModel.Load(TinyCheckpointOnHub.Id, torch.CPU);
        Assert.Empty(hub.Hub.Requests);
    }

    [Fact]
    public void Download_command_prints_progress_and_ends_with_the_snapshot_folder()
    {
        // A fresh cache: another test of the class may have downloaded these files first (xunit v3 orders tests freely).
        string cache = Path.Combine(hub.Home, "hub");
        if (Directory.Exists(cache)) Directory.Delete(cache, recursive: true);
        var (code, output, error) = CliInvocation.Invoke("download", TinyCheckpointOnHub.Id, "--include", "*.json", "--include", "merges.txt");

        Assert.True(code == 0, output + error);
        Assert.Equal(hub.Snapshot, output.TrimEnd().Split('\n')[^1]);
        Assert.True(File.Exists(Path.Combine(hub.Snapshot, "merges.txt")));
        Assert.Contains($"(commit {hub.Commit}): 7 file(s)", output);
        Assert.Matches(@"\[\d/7\] config\.json \([\d,]+ B\)", error);

        var missing = CliInvocation.Invoke("download", "acme/absent");
        Assert.Equal(1, missing.Code);
        Assert.StartsWith("error: ", missing.Error);
        Assert.Contains("no repository acme/absent", missing.Error);

        Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", "1");
        try
        {
            var cached = CliInvocation.Invoke("download", TinyCheckpointOnHub.Id, "--include", "*.json");
            Assert.True(cached.Code == 0, cached.Error);
            Assert.Contains("0 downloaded", cached.Output);
            var notCached = CliInvocation.Invoke("download", "acme/other");
            Assert.Equal(1, notCached.Code);
            Assert.Contains("HF_HUB_OFFLINE", notCached.Error);
        }
        finally { Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", null); }
    }

    [Fact]
    public void Demo_and_evaluate_take_a_repository_id_for_their_model()
    {
        // Through the resolver: a repository the hub does not have is named as such (a found one loads as Load does above).
        var demo = CliInvocation.Invoke("demo", "--model", "acme/absent", "--video", "v.mp4", "--device", "cpu");
        Assert.Equal(1, demo.Code);
        Assert.Contains("no folder 'acme/absent', so it was taken as a repository id", demo.Error);
        Assert.Contains("no repository acme/absent", demo.Error);

        var mini = new MiniVsiBench("hub-evaluate");
        var evaluate = CliInvocation.Invoke("evaluate", "vsibench", "--model", "acme/absent", "--data", mini.Root, "--device", "cpu",
            "--out", Path.Combine(mini.Root, "r.jsonl"));
        Assert.Equal(1, evaluate.Code);
        Assert.Contains("no repository acme/absent", evaluate.Error);
    }
}
