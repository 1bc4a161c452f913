using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>The training loop on the tiny checkpoint and a synthetic video, on the CPU (4 frames of 84×112).</summary>
public class SftTrainerTests(ITestOutputHelper output)
{
    static readonly object Setup = new();
    static string? _sharedData;

    /// <summary>A tiny checkpoint, a synthetic video and annotations (made once per test run).</summary>
    internal static string Data()
    {
        lock (Setup)
        {
            if (_sharedData != null) return _sharedData;
            string dir = TestPaths.NewTempDir("sft-data");
            TinyCheckpoint.Create(Path.Combine(dir, "model"));
            SyntheticVideo.Create(Path.Combine(dir, "videos", "room.mp4"));
            File.WriteAllLines(Path.Combine(dir, "train.jsonl"), Enumerable.Range(0, 6).Select(i =>
                $$"""{"video": "videos/room.mp4", "conversations": [{"from": "human", "value": "<video>\nHow many chairs are there? {{i}}"}, {"from": "gpt", "value": "{{i % 3}}"}]}"""));
            return _sharedData = dir;
        }
    }

    internal static TrainingArguments Args(string data, string output, string annotations = "train.jsonl") => new()
    {
        ModelNameOrPath = Path.Combine(data, "model"), DatasetUse = Path.Combine(data, annotations), OutputDir = output,
        LearningRate = 1e-3, MmProjectorLr = 3e-3, GradientAccumulationSteps = 2, MaxSteps = 4, SaveSteps = 2, Device = "cpu",
        VideoMinFrames = 4, VideoMaxFrames = 4, VideoMinFramePixels = 84 * 112, VideoMaxFramePixels = 84 * 112,
    };

    [Fact]
    public void Labels_are_the_answer_and_its_end_token_as_data_qwen_masks_them()
    {
        string data = Data();
        using var model = SpatialMllmModel.Load(Path.Combine(data, "model"), torch.CPU);
        var builder = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens);
        var (rows, errors) = SftAnnotations.Load(Path.Combine(data, "train.jsonl"));
        Assert.Empty(errors);
        var (ids, labels) = builder.Tokenize(rows[2], videoTokens: 24);
        Assert.Equal(ids.Length, labels.Length);
        Assert.Equal(24, ids.Count(i => i == model.Config.Tokens.VideoTokenId));
        var learned = labels.Where(l => l != SftExample.IgnoreIndex).Select(l => (int)l).ToList();
        Assert.Equal("2<|im_end|>\n", model.Tokenizer.Decode(learned));
        // The labelled tokens are the last ones: the answer closes the conversation.
        Assert.Equal(labels[^learned.Count..], ids[^learned.Count..]);
        // The seed's script: 16 frames whatever the length (min = max = 16), indices np.linspace-truncated.
        Assert.Equal([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 31], builder.FrameIndices(new VideoInfo("v", 32, 320, 240, 8, TimeSpan.FromSeconds(4), 0)).Indices);
    }

    [Fact]
    public void Kept_decoded_videos_give_the_examples_decoding_gives()
    {
        string data = Data();
        using var model = SpatialMllmModel.Load(Path.Combine(data, "model"), torch.CPU);
        var options = Args(data, "unused").DataOptions;
        var (rows, _) = SftAnnotations.Load(Path.Combine(data, "train.jsonl"));
        using var decoding = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens, options);
        using var keeping = new SftExampleBuilder(model.Tokenizer, model.Processor, model.Config.Tokens, options with { DecodedVideoCache = 1 });
        File.Copy(rows[0].VideoPath, Path.Combine(data, "videos", "room-copy.mp4"), overwrite: true);
        var copy = rows[1] with { Video = "videos/room-copy.mp4" };
        foreach (var row in new[] { rows[0], rows[1], copy, rows[2], copy })
        {
            using var expected = decoding.Build(row);
            using var kept = keeping.Build(row);
            Assert.Equal(expected.InputIds, kept.InputIds);
            Assert.True(expected.PixelValuesVideos.equal(kept.PixelValuesVideos).all().item<bool>(), row.Video);
            Assert.True(expected.VideoTchw.equal(kept.VideoTchw).all().item<bool>(), row.Video);
        }
    }

    [Fact]
    public void Resuming_after_a_stop_ends_with_the_same_weights_as_an_uninterrupted_run()
    {
        string data = Data();
        string straight = TestPaths.NewTempDir("sft-straight"), stopped = TestPaths.NewTempDir("sft-stopped");
        var first = new SftTrainer(Args(data, straight), output.WriteLine).Run();
        Assert.Equal(4, first.FinalStep);
        Assert.True(first.Steps[^1].Loss < first.Steps[0].Loss, "the loss falls on repeated answers");

        // Stop after step 3 (as a kill after the step-2 checkpoint would: step 3 is lost), then run again.
        using var cancel = new CancellationTokenSource();
        var partial = new SftTrainer(Args(data, stopped), line => { output.WriteLine(line); if (line.StartsWith("step 3/", StringComparison.Ordinal)) cancel.Cancel(); }).Run(cancel.Token);
        Assert.Equal(3, partial.FinalStep);
        Assert.Null(partial.FinalModelFolder);
        var lines = new List<string>();
        var resumed = new SftTrainer(Args(data, stopped), lines.Add).Run();
        Assert.Contains(lines, l => l.StartsWith("resumed from", StringComparison.Ordinal) && l.EndsWith("at step 2", StringComparison.Ordinal));
        Assert.Equal(2, resumed.StartStep);
        Assert.Equal(first.Steps[^1].Loss!.Value, resumed.Steps[^1].Loss!.Value, 6);

        using var a = SafetensorsFile.Open(Path.Combine(straight, "model.safetensors"));
        using var b = SafetensorsFile.Open(Path.Combine(stopped, "model.safetensors"));
        Assert.Equal(a.Entries.Keys.Order(), b.Entries.Keys.Order());
        foreach (string key in a.Entries.Keys)
        {
            using var scope = torch.NewDisposeScope();
            Assert.True(a.Read(key).equal(b.Read(key)).all().item<bool>(), key);
        }
        Assert.Equal(5, File.ReadAllLines(Path.Combine(straight, SftTrainer.LogFile)).Length); // header + 4 steps
        // The resumed run trained step 3 again: log.csv has it once, as every step (issue 23: rows repeated after a resume).
        Assert.Equal(["1", "2", "3", "4"], File.ReadAllLines(Path.Combine(stopped, SftTrainer.LogFile)).Skip(1).Select(row => row.Split(',')[0]));
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(straight, "runs"), "events.out.tfevents.*", SearchOption.AllDirectories));
    }

    [Fact]
    public void A_checkpoint_in_the_released_sharded_layout_loads_back_with_its_tokenizer()
    {
        string data = Data(), dir = TestPaths.NewTempDir("sft-sharded");
        using var model = SpatialMllmModel.Load(Path.Combine(data, "model"), torch.CPU);
        CheckpointWriter.Save(model, dir, maxShardBytes: 2_000_000);
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
        Assert.True(Directory.GetFiles(dir, "model-*-of-*.safetensors").Length > 1);
        foreach (string f in new[] { "config.json", "vocab.json", "merges.txt", "added_tokens.json", "preprocessor_config.json", "chat_template.json" })
            Assert.True(File.Exists(Path.Combine(dir, f)), f);
        using var loaded = SpatialMllmModel.Load(dir, torch.CPU);
        Assert.Empty(loaded.LoadReport!.Missing);
        var original = model.Components().SelectMany(c => c.Module.state_dict().Select(kv => (c.Prefix + kv.Key, kv.Value))).ToDictionary();
        foreach (var (prefix, module) in loaded.Components())
            foreach (var (name, t) in module.state_dict())
                Assert.True(t.equal(original[prefix + name]).all().item<bool>(), prefix + name);
    }

    [Fact]
    public void A_bad_annotation_row_is_reported_with_file_and_line_and_the_run_goes_on()
    {
        string data = Data(), dir = TestPaths.NewTempDir("sft-bad");
        string annotations = Path.Combine(dir, "mixed.jsonl");
        var good = File.ReadAllLines(Path.Combine(data, "train.jsonl"));
        File.WriteAllLines(annotations, [good[0], "{not json", good[1].Replace("videos/room.mp4", "videos/missing.mp4"), good[2],
            """{"video": "videos/room.mp4", "conversations": [{"from": "human", "value": "no tag"}, {"from": "gpt", "value": "1"}]}""", good[3]]);
        File.Copy(Path.Combine(data, "videos", "room.mp4"), Path.Combine(dir, "room.mp4"));
        var args = Args(data, Path.Combine(dir, "out")) with { DatasetUse = annotations, DataPath = data, MaxSteps = 2, SaveSteps = 0 };

        var (rows, errors) = SftTrainer.DryRun(args);
        Assert.Equal(6, rows);
        var messages = errors.Select(e => e.Message).ToList();
        foreach (var m in messages) output.WriteLine(m);
        Assert.Equal(3, messages.Count);
        Assert.Contains(messages, m => m.StartsWith($"{annotations}:2: not valid JSON", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith($"{annotations}:3: ", StringComparison.Ordinal) && m.Contains("missing.mp4"));
        Assert.Contains(messages, m => m.StartsWith($"{annotations}:5: ", StringComparison.Ordinal) && m.Contains("<video>"));

        var summary = new SftTrainer(args, output.WriteLine).Run();
        Assert.Equal(2, summary.FinalStep);
        Assert.Contains(summary.SkippedRows, e => e.Line == 3 && e.File == annotations);
        Assert.True(File.Exists(Path.Combine(dir, "out", "model.safetensors")));
    }
}
