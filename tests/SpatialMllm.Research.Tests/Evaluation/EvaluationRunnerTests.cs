using System.Diagnostics;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

public class EvaluationRunnerTests
{
    static Dictionary<string, string> Results(string path) =>
        PredictionFile.Read(path).ToDictionary(p => p.Id, p => p.Text);

    static string Reference(MiniVsiBench mini)
    {
        string path = Path.Combine(mini.Root, "reference.jsonl");
        EvaluationRunner.Run(mini.Items(), new DryRunAnswerer(), path, TextWriter.Null);
        return path;
    }

    [Fact]
    public void Run_PreparesEachVideoOnce_AnswersEveryQuestion()
    {
        var mini = new MiniVsiBench("runner-once");
        var answerer = new CountingAnswerer();
        string results = Path.Combine(mini.Root, "results.jsonl");
        var progress = new List<EvaluationProgress>();
        int written = EvaluationRunner.Run(mini.Items(), answerer, results, TextWriter.Null, progress.Add).Answered;

        Assert.Equal(MiniVsiBench.QuestionCount, written);
        Assert.Equal(5, answerer.Prepared.Count);
        Assert.All(answerer.Prepared.Values, n => Assert.Equal(1, n));
        Assert.Equal(MiniVsiBench.QuestionCount, Results(results).Count);
        Assert.Equal(MiniVsiBench.QuestionCount, progress[^1].AnsweredNow);
        Assert.Equal(10, mini.Dataset.Questions.Select(q => q.QuestionType).Distinct().Count());
        // A finished results file scores directly.
        var scores = VsiBench.Score(results, mini.Dataset, VsiBenchScoringProfile.SpatialMllm);
        Assert.Equal(MiniVsiBench.QuestionCount, scores.Questions.Count);
    }

    [Fact]
    public void Resume_AfterCancellationAndTornLine_MatchesUninterruptedRun()
    {
        var mini = new MiniVsiBench("runner-resume");
        string reference = Reference(mini);
        string results = Path.Combine(mini.Root, "results.jsonl");

        using var stop = new CancellationTokenSource();
        // Cancelled during the second video's batch (6 + 9 questions), which is finished and written whole.
        var first = new CountingAnswerer(stopAfter: 13, stop);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            EvaluationRunner.Run(mini.Items(), first, results, TextWriter.Null, cancel: stop.Token));
        Assert.Equal(15, Results(results).Count);
        // A kill in the middle of a write leaves half a line behind.
        File.AppendAllText(results, "{\"id\": 1404, \"predic");

        var log = new StringWriter();
        var second = new CountingAnswerer();
        int written = EvaluationRunner.Run(mini.Items(), second, results, log).Answered;

        Assert.Equal(MiniVsiBench.QuestionCount - 15, written);
        Assert.Contains("incomplete", log.ToString());
        Assert.Contains("15 of 40 already answered", log.ToString());
        var ids = PredictionFile.Read(results).Select(p => p.Id).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Equal(Results(reference), Results(results));
        // Only videos with unanswered questions are prepared again, each once.
        Assert.All(second.Prepared.Values, n => Assert.Equal(1, n));
        Assert.True(second.Prepared.Count < 5);
    }

    [Fact]
    public void Shards_PartitionByVideo_AndMergeToTheSingleRun()
    {
        var mini = new MiniVsiBench("runner-shards");
        string reference = Reference(mini);
        var items = mini.Items();
        var shardFiles = new List<string>();
        var seenVideos = new HashSet<string>();
        for (int i = 0; i < 3; i++)
        {
            var part = new Shard(i, 3).Select(items);
            Assert.NotEmpty(part);
            foreach (string video in part.Select(p => p.Video.Key).Distinct()) Assert.True(seenVideos.Add(video), $"{video} in two shards");
            string file = Path.Combine(mini.Root, $"shard{i}.jsonl");
            EvaluationRunner.Run(part, new DryRunAnswerer(), file, TextWriter.Null);
            shardFiles.Add(file);
        }
        Assert.Equal(5, seenVideos.Count);
        // Largest-first balancing: 10, 9, 8 open the shards, then 7 → shard 2 (8), 6 → shard 1 (9).
        Assert.Equal([10, 15, 15], shardFiles.Select(f => Results(f).Count));

        string merged = Path.Combine(mini.Root, "merged.jsonl");
        var report = ResultsMerger.Merge(shardFiles, merged);
        Assert.Empty(report.ConflictingIds);
        Assert.Equal(MiniVsiBench.QuestionCount, report.Records);
        Assert.Equal(File.ReadAllText(Path.Combine(mini.Root, "sorted-reference.jsonl").Also(p => ResultsMerger.Merge([reference], p))), File.ReadAllText(merged));
    }

    [Fact]
    public void Merge_DetectsConflicts_KeepsIdenticalDuplicatesOnce()
    {
        string dir = TestPaths.NewTempDir("merge");
        string a = Path.Combine(dir, "a.jsonl"), b = Path.Combine(dir, "b.jsonl"), c = Path.Combine(dir, "c.jsonl");
        File.WriteAllText(a, "{\"id\": 2, \"prediction\": \"A\"}\n{\"id\": 1, \"prediction\": \"3\"}\n");
        File.WriteAllText(b, "{\"id\": 2, \"prediction\": \"A\"}\n{\"id\": 10, \"prediction\": \"B\"}\n");
        File.WriteAllText(c, "{\"id\": 1, \"prediction\": \"4\"}\n");
        string output = Path.Combine(dir, "out.jsonl");

        var ok = ResultsMerger.Merge([a, b], output);
        Assert.Equal(3, ok.Records);
        Assert.Equal(1, ok.IdenticalDuplicates);
        Assert.Equal(["1", "2", "10"], PredictionFile.Read(output).Select(p => p.Id));

        File.Delete(output);
        var conflict = ResultsMerger.Merge([a, c], output);
        Assert.Equal(["1"], conflict.ConflictingIds);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void ResultsLines_AreOneRowEach_InTheFormatEarlierFilesAndNotebooksRead()
    {
        Prediction[] rows = [new("1404", "B", "arkitscenes/41069025"), new("scanqa_val-scene0011-0_0", "brown chair")];
        Assert.Equal("{\"id\":1404,\"prediction\":\"B\",\"video\":\"arkitscenes/41069025\"}\n", ResultsFile.ToLine(rows[0]));
        Assert.Equal("{\"id\":\"scanqa_val-scene0011-0_0\",\"prediction\":\"brown chair\"}\n", ResultsFile.ToLine(rows[1]));
        string path = Path.Combine(TestPaths.NewTempDir("results-lines"), "r.jsonl");
        File.WriteAllText(path, string.Concat(rows.Select(ResultsFile.ToLine)));
        Assert.Equal(rows, PredictionFile.Read(path));
    }

    [Fact]
    public void Merge_KeepsEachRowsVideo()
    {
        var mini = new MiniVsiBench("merge-video");
        string results = Reference(mini);
        string merged = Path.Combine(mini.Root, "merged.jsonl");
        ResultsMerger.Merge([results], merged);
        var videos = mini.Items().ToDictionary(i => i.Id, i => i.Video.Key);
        Assert.All(PredictionFile.Read(merged), row => Assert.Equal(videos[row.Id], row.Video));
        Assert.Equal(PredictionFile.Read(results).OrderBy(r => int.Parse(r.Id)), PredictionFile.Read(merged));
    }

    [Fact]
    public void Recover_RefusesACorruptMiddleLine()
    {
        string dir = TestPaths.NewTempDir("corrupt");
        string path = Path.Combine(dir, "r.jsonl");
        File.WriteAllText(path, "{\"id\": 1, \"prediction\": \"A\"}\n{\"id\": 2, \"pre\n{\"id\": 3, \"prediction\": \"B\"}\n");
        var e = Assert.Throws<DataFileException>(() => ResultsFile.Recover(path, TextWriter.Null));
        Assert.Contains("line 2", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void MissingVideos_AreListedBeforeAnyWork()
    {
        var mini = new MiniVsiBench("missing-videos");
        File.Delete(Path.Combine(mini.Root, "arkitscenes", "mini00.mp4"));
        var e = Assert.Throws<FileNotFoundException>(() => mini.Items());
        Assert.Contains("1 of 5 videos not found", e.Message);
        Assert.Contains("arkitscenes/mini00", e.Message);
    }

    [Fact]
    public void Loader_MalformedRow_NamesFileAndLine()
    {
        string dir = TestPaths.NewTempDir("malformed");
        string path = Path.Combine(dir, "test.jsonl");
        var lines = File.ReadAllLines(Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl")).ToList();
        lines[4] = lines[4].Replace("\"ground_truth\": \"B\"", "\"ground_truth\": \"E\"");
        File.WriteAllLines(path, lines);
        var e = Assert.Throws<DataFileException>(() => VsiBench.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("line 5", e.Message);
        Assert.Contains("not one of the option letters", e.Message);
    }

    [Fact]
    public void Loader_ParquetEqualsJsonl_JoinedById()
    {
        var fromJsonl = VsiBench.Load(Path.Combine(TestPaths.Data, "vsibench", "test.jsonl"));
        var fromParquet = VsiBench.Load(Path.Combine(TestPaths.Data, "vsibench", "test-00000-of-00001.parquet"));
        Assert.Equal(5130, fromParquet.Count);
        Assert.Equal(288, fromParquet.Questions.Select(q => q.VideoKey).Distinct().Count());
        Assert.Equal(2490, fromParquet.Questions.Count(q => q.IsMultipleChoice));
        foreach (var q in fromJsonl.Questions)
        {
            var p = fromParquet[q.Id];
            Assert.Equal(q with { Options = null }, p with { Options = null });
            Assert.Equal(q.Options ?? [], p.Options ?? []);
        }
    }

    [Fact]
    public void Subsets_FromPrunedColumn_OrRefusedWithoutOne()
    {
        var examples = VsiBench.Load(Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl"));
        Assert.Equal(7, examples.Select(VsiBenchSubset.Debiased).Count);
        Assert.Equal(3, VsiBench.Load(Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl"), VsiBenchSubset.Pruned).Count);
        var e = Assert.Throws<InvalidOperationException>(() => VsiBench.Load(Path.Combine(TestPaths.Data, "vsibench", "test.jsonl"), VsiBenchSubset.Debiased));
        Assert.Contains("pruned_ids.txt", e.Message);
    }

    [Fact]
    public void Prompts_AreTheSeedsText()
    {
        var q = VsiBench.Load(Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl"));
        var mca = q.Questions.First(x => x.IsMultipleChoice);
        Assert.Equal($"{mca.Question}\nOptions:\n{string.Join("\n", mca.Options!)}\nAnswer with the option's letter from the given choices directly.",
            VsiBenchPrompts.Build(mca));
        var na = q[900001];
        Assert.Equal("How many chair(s) are in this room?\nPlease answer the question using a single word or phrase.", VsiBenchPrompts.Build(na));
    }
}

internal static class TestExtensions
{
    public static string Also(this string value, Action<string> action) { action(value); return value; }
}
