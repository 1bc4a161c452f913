using SpatialMllm.Research.Hub;

namespace SpatialMllm.Research.Tests.Hub;

public class HubSettingsTests
{
    static HubSettings From(Dictionary<string, string> variables) => HubSettings.FromEnvironment(name => variables.GetValueOrDefault(name));

    [Fact]
    public void The_environment_is_read_as_huggingface_hub_reads_it()
    {
        string home = TestPaths.NewTempDir("hf-home");
        var defaults = From(new() { ["HF_HOME"] = home });
        Assert.Equal("https://huggingface.co", defaults.Endpoint);
        Assert.Equal(Path.Combine(home, "hub"), defaults.CacheDir);
        Assert.Null(defaults.Token);
        Assert.False(defaults.Offline);

        // huggingface-cli login's token file, then HF_TOKEN over it.
        File.WriteAllText(Path.Combine(home, "token"), "hf_from_file\n");
        Assert.Equal("hf_from_file", From(new() { ["HF_HOME"] = home }).Token);
        Assert.Equal("hf_env", From(new() { ["HF_HOME"] = home, ["HF_TOKEN"] = "hf_env" }).Token);

        var set = From(new() { ["HF_HOME"] = home, ["HF_HUB_CACHE"] = "/data/hub", ["HF_ENDPOINT"] = "http://mirror.local/", ["HF_HUB_OFFLINE"] = "yes" });
        Assert.Equal("/data/hub", set.CacheDir);
        Assert.Equal("http://mirror.local", set.Endpoint);
        Assert.True(set.Offline);
        Assert.False(From(new() { ["HF_HOME"] = home, ["HF_HUB_OFFLINE"] = "0" }).Offline);
        Assert.True(From(new() { ["HF_HOME"] = home, ["TRANSFORMERS_OFFLINE"] = "1" }).Offline);

        var xdg = From(new() { ["XDG_CACHE_HOME"] = "/xdg" });
        Assert.Equal(Path.Combine("/xdg", "huggingface", "hub"), xdg.CacheDir);
    }

    [Fact]
    public void Repository_ids_parse_as_owner_name_and_revision_and_anything_else_is_a_folder()
    {
        var (repo, revision) = HubRepository.Parse("Diankun/Spatial-MLLM-v1.1-Instruct-135K@refs/pr/1");
        Assert.Equal("Diankun/Spatial-MLLM-v1.1-Instruct-135K", repo.Id);
        Assert.Equal("refs/pr/1", revision);
        Assert.Equal("models--Diankun--Spatial-MLLM-v1.1-Instruct-135K", repo.CacheFolderName);
        Assert.Equal("datasets--nyu-visionx--VSI-Bench", new HubRepository("nyu-visionx/VSI-Bench", RepoType.Dataset).CacheFolderName);

        foreach (string id in new[] { "Qwen/Qwen2.5-VL-3B-Instruct", "facebook/VGGT-1B", "checkpoints/tiny", "a/b@main" })
            Assert.True(HubRepository.LooksLikeRepoId(id), id);
        foreach (string path in new[] { "/abs/path", "./x/y", "../x/y", "a/b/c", "tiny", "a--b/c", "a/b..c", "a/b@", "a/-b", "C:\\x\\y" })
            Assert.False(HubRepository.LooksLikeRepoId(path), path);
        Assert.Throws<ArgumentException>(() => new HubRepository("a/b/c"));
    }

    [Fact]
    public void Patterns_match_as_fnmatch_does_and_the_model_defaults_take_what_loading_needs()
    {
        var patterns = RepoFilePatterns.Of(["*.json", "videos/", "shard-0000[0-2].bin"], RepoFilePatterns.Everything);
        Assert.True(patterns.Matches("config.json"));
        Assert.True(patterns.Matches("sub/dir/x.json")); // * crosses '/', as in fnmatch
        Assert.True(patterns.Matches("videos/a.mp4"));
        Assert.True(patterns.Matches("shard-00002.bin"));
        Assert.False(patterns.Matches("shard-00003.bin"));
        Assert.False(patterns.Matches("config.jsonl"));

        var model = RepoFilePatterns.ModelDefaults;
        foreach (string name in new[] { "config.json", "model.safetensors", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
                     "tokenizer.json", "vocab.json", "merges.txt", "chat_template.json", "preprocessor_config.json", "generation_config.json" })
            Assert.True(model.Matches(name), name);
        foreach (string name in new[] { "README.md", "optimizer.pt", "pytorch_model.bin", "checkpoint-100/model.safetensors", ".gitattributes" })
            Assert.False(model.Matches(name), name);
        Assert.Same(RepoFilePatterns.ModelDefaults, RepoFilePatterns.Of([], RepoFilePatterns.ModelDefaults));
    }

    [Fact]
    public void Without_a_file_list_a_sharded_snapshot_is_complete_only_with_every_shard_its_index_names()
    {
        const string index = """{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}""";
        var one = new HashSet<string> { "config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors" };
        Assert.False(RepoFilePatterns.ModelDefaults.LooksComplete(one, _ => index));
        one.Add("model-00002-of-00002.safetensors");
        Assert.True(RepoFilePatterns.ModelDefaults.LooksComplete(one, _ => index));
        Assert.False(RepoFilePatterns.ModelDefaults.LooksComplete(new HashSet<string> { "config.json" }, _ => index));
        var explicitPatterns = RepoFilePatterns.Of(["*.json", "*.txt"], RepoFilePatterns.ModelDefaults);
        Assert.False(explicitPatterns.LooksComplete(new HashSet<string> { "config.json" }, _ => ""));
        Assert.True(explicitPatterns.LooksComplete(new HashSet<string> { "config.json", "merges.txt" }, _ => ""));
    }
}
