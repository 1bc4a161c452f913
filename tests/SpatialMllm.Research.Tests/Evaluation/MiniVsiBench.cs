using System.Text.Json.Nodes;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

/// <summary>A small VSI-Bench on disk: 5 videos (one a PNG frame folder) over the three source datasets, 6..10 questions
/// each, every question type present (from the spec's example rows), written in shuffled row order.</summary>
internal sealed class MiniVsiBench
{
    public string Root { get; }
    public string DatasetPath => Path.Combine(Root, "test.jsonl");
    public VsiBenchDataset Dataset => VsiBench.Load(DatasetPath);
    public const int QuestionCount = 6 + 7 + 8 + 9 + 10;

    /// <param name="realVideos">Decodable videos and PNG frames made with ffmpeg (for runs with a real model) instead
    /// of empty placeholder files.</param>
    public MiniVsiBench(string name, bool realVideos = false)
    {
        Root = TestPaths.NewTempDir(name);
        var examples = File.ReadAllLines(Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl"))
            .Where(l => l.Trim().Length > 0).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        string[] sources = ["arkitscenes", "scannet", "scannetpp"];
        var rows = new List<string>();
        for (int v = 0; v < 5; v++)
        {
            string dataset = sources[v % 3], scene = $"mini{v:00}";
            for (int k = 0; k < 6 + v; k++)
            {
                var row = examples[k].DeepClone().AsObject();
                row["id"] = 1000 + v * 100 + k;
                row["dataset"] = dataset;
                row["scene_name"] = scene;
                rows.Add(row.ToJsonString());
            }
            Directory.CreateDirectory(Path.Combine(Root, dataset));
            if (v == 3)
            {
                string frames = Directory.CreateDirectory(Path.Combine(Root, dataset, scene)).FullName;
                if (realVideos) Video.TestVideos.NumberedPngs(frames, 16, prefix: "");
                else for (int f = 0; f < 16; f++) File.WriteAllBytes(Path.Combine(frames, $"{f:000}.png"), []);
            }
            else if (realVideos) Video.TestVideos.TestSrc(Path.Combine(Root, dataset), scene + ".mp4", frames: 12 + v, width: 96, height: 72);
            else File.WriteAllBytes(Path.Combine(Root, dataset, scene + ".mp4"), []);
        }
        // Row order must not matter: everything joins on id.
        rows.Reverse();
        File.WriteAllLines(DatasetPath, rows);
    }

    public IReadOnlyList<EvaluationItem> Items() => VsiBenchVideos.Items(Dataset, Root);
}

/// <summary>A deterministic stand-in for the model that counts how often each video is encoded and can stop the run
/// (as a crash would) once a given number of questions are answered (the batch that reaches it is finished).</summary>
internal sealed class CountingAnswerer(int stopAfter = int.MaxValue, CancellationTokenSource? stop = null) : IVideoAnswerer
{
    readonly DryRunAnswerer _inner = new();
    /// <summary>Encodings per video key (on the runner's thread; decoding runs ahead on workers).</summary>
    public Dictionary<string, int> Prepared { get; } = [];
    public int Answers { get; private set; }
    readonly int _stopAfter = stopAfter;
    readonly CancellationTokenSource? _stop = stop;

    public IDecodedVideo Decode(BenchmarkVideo video) => new Decoded(this, video.Key, _inner.Decode(video));

    public void Dispose() { }

    sealed class Decoded(CountingAnswerer owner, string key, IDecodedVideo inner) : IDecodedVideo
    {
        public IPreparedVideo Encode()
        {
            owner.Prepared[key] = owner.Prepared.GetValueOrDefault(key) + 1;
            return new Video(owner, inner.Encode());
        }

        public void Dispose() => inner.Dispose();
    }

    sealed class Video(CountingAnswerer owner, IPreparedVideo inner) : IPreparedVideo
    {
        public IReadOnlyList<string> Answer(IReadOnlyList<string> prompts)
        {
            owner.Answers += prompts.Count;
            if (owner.Answers >= owner._stopAfter) owner._stop?.Cancel();
            return inner.Answer(prompts);
        }

        public void Dispose() => inner.Dispose();
    }
}
