using System.Text.Json;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Tests.Evaluation;

namespace SpatialMllm.Research.Tests.Cli;

/// <summary>
/// Issue 16: runs that cannot silently go wrong. Each test reproduces one failure a user met (two runs on one file, a
/// killed parent, Ctrl+C/SIGTERM, resuming another model's answers, an unreadable video, paths out of --data, bad
/// options) with real processes and signals where that is what happened, and checks the safe behaviour.
/// </summary>
public class RunSafetyTests
{
    static Dictionary<string, string> Results(string path) => PredictionFile.Read(path).ToDictionary(p => p.Id, p => p.Text);

    static Dictionary<string, string> Reference(MiniVsiBench mini)
    {
        string reference = Path.Combine(mini.Root, "reference.jsonl");
        EvaluationRunner.Run(mini.Items(), new DryRunAnswerer(), reference, TextWriter.Null);
        return Results(reference);
    }

    [Fact]
    public void Lock_SecondHolderIsRefusedWithTheFirstsPid_AndFreedOnDispose()
    {
        string dir = TestPaths.NewTempDir("lock");
        string results = Path.Combine(dir, "r.jsonl");
        using (ResultsFileLock.Acquire(results, "evaluate vsibench"))
        {
            // Another open file description in this process conflicts just as another process's would.
            var e = Assert.Throws<OutputLockedException>(() => ResultsFileLock.Acquire(results, "evaluate scanqa"));
            Assert.Contains($"pid {Environment.ProcessId}", e.Message);
            Assert.Contains("`evaluate vsibench`", e.Message);
            Assert.Contains(results, e.Message);
        }
        using (ResultsFileLock.Acquire(results, "again")) { }
    }

    [Fact]
    public void TwoProcessesOnOneOut_OneRunsTheOtherIsRefusedNamingIt_FileIntact()
    {
        var mini = new MiniVsiBench("race");
        var reference = Reference(mini);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string[] args = ["evaluate", "vsibench", "--dry-run", "--dry-run-seconds", "0.25", "--data", mini.Root, "--out", results];

        using var first = CliProcess.Start(mini.Root, args);
        using var second = CliProcess.Start(mini.Root, args);
        var a = CliProcess.Finish(first);
        var b = CliProcess.Finish(second);

        var (winner, loser, winnerPid) = a.Code == 0 ? (a, b, first.Id) : (b, a, second.Id);
        Assert.True(winner.Code == 0, a.Error + b.Error);
        Assert.Equal(1, loser.Code);
        Assert.Contains("is being written by another run", loser.Error);
        Assert.True(loser.Error.Contains($"pid {winnerPid}"), loser.Error);
        Assert.Equal(MiniVsiBench.QuestionCount, CliProcess.CountLines(results));   // no interleaved or duplicated lines
        Assert.Equal(reference, Results(results));
    }

    [Fact]
    public void ParentKilled_WorkersDieWithinSeconds_AndARerunResumesWithoutLoss()
    {
        var mini = new MiniVsiBench("parent-kill");
        var reference = Reference(mini);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string[] args = ["evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results, "--workers", "2"];
        string[] shardLocks = [.. Enumerable.Range(0, 2).Select(i => Path.Combine(mini.Root, $"results.shard-{i}-of-2.jsonl.lock"))];

        var workerPids = new List<int>();
        using (var parent = CliProcess.Start(mini.Root, [.. args, "--dry-run-seconds", "0.2"]))
        {
            CliProcess.WaitFor(() => shardLocks.All(p => File.Exists(p) && new FileInfo(p).Length > 0)
                                     && CliProcess.CountLines(Path.Combine(mini.Root, "results.shard-0-of-2.jsonl")) >= 2,
                "both workers answering", parent);
            foreach (string path in shardLocks)
                workerPids.Add(JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("pid").GetInt32());
            Assert.All(workerPids, pid => Assert.False(CliProcess.IsGone(pid)));
            parent.Kill();   // SIGKILL to the parent alone, as `kill -9 PID` does
            parent.WaitForExit();
        }
        CliProcess.WaitFor(() => workerPids.All(CliProcess.IsGone), "the workers to die with their parent", timeoutSeconds: 10);
        int answered = Enumerable.Range(0, 2).Sum(i => CliProcess.CountLines(Path.Combine(mini.Root, $"results.shard-{i}-of-2.jsonl")));
        Assert.InRange(answered, 2, MiniVsiBench.QuestionCount - 1);

        var (code, output, error) = CliProcess.Finish(CliProcess.Start(mini.Root, args));
        Assert.True(code == 0, output + error);
        Assert.Equal(reference, Results(results));
        Assert.Empty(Directory.GetFiles(mini.Root, "results.shard-*"));
    }

    [Theory]
    [InlineData(PosixProcess.SigTerm, 143, "SIGTERM", 1)]
    [InlineData(2, 130, "SIGINT", 1)]
    [InlineData(PosixProcess.SigTerm, 143, "SIGTERM", 2)]
    public void Signal_FinishesTheAnswerInProgress_PrintsHowToResume_AndExitsWithTheSignalsCode(int signal, int exitCode, string name, int workers)
    {
        var mini = new MiniVsiBench($"signal-{name}-{workers}");
        var reference = Reference(mini);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string[] args = ["evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results, "--workers", workers.ToString()];
        string watched = workers == 1 ? results : Path.Combine(mini.Root, "results.shard-0-of-2.jsonl");

        // A shell starting the tests in the background (`cmd &` without job control) ignores SIGINT for them, every
        // process they start inherits that, and .NET keeps an ignored signal ignored: the run then finishes (exit 0).
        Assert.SkipWhen(IgnoredHere(signal), $"{name} is ignored in this test process (started in the background by a non-interactive shell), and the command it starts inherits that; run the tests from a terminal or under `timeout` to test it");
        using (var run = CliProcess.Start(mini.Root, [.. args, "--dry-run-seconds", "0.2"]))
        {
            CliProcess.WaitFor(() => CliProcess.CountLines(watched) >= 3, "some answers", run);
            Assert.True(PosixProcess.Signal(run.Id, signal));
            var (code, output, error) = CliProcess.Finish(run, TimeSpan.FromSeconds(30));
            Assert.True(code == exitCode, $"exit {code}: {output}{error}");
            Assert.Contains("interrupted", output);
            Assert.Contains("Rerun the same command to resume", output);
        }
        foreach (string file in Directory.GetFiles(mini.Root, "results*.jsonl"))
            Assert.EndsWith("\n", File.ReadAllText(file));   // every answer written whole: nothing torn
        var (again, againOutput, againError) = CliProcess.Finish(CliProcess.Start(mini.Root, args));
        Assert.True(again == 0, againOutput + againError);
        Assert.Equal(reference, Results(results));
    }

    /// <summary>Whether <paramref name="signal"/> is ignored in this process (the SigIgn mask of /proc/self/status).</summary>
    static bool IgnoredHere(int signal)
    {
        string? mask = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return mask is not null && (Convert.ToUInt64(mask["SigIgn:".Length..].Trim(), 16) & (1UL << (signal - 1))) != 0;
    }

    [Fact]
    public void Resume_RefusesAnotherModelsAnswers_SayingWhatDiffers_AndForceNewKeepsABackup()
    {
        var mini = new MiniVsiBench("manifest");
        string results = Path.Combine(mini.Root, "results.jsonl");
        string modelA = TestPaths.NewTempDir("model-a"), modelB = TestPaths.NewTempDir("model-b");
        TinyCheckpoint.Create(modelA, seed: 1);
        TinyCheckpoint.Create(modelB, seed: 2);
        // What a run with model A left: some answers and its manifest (written as `evaluate` writes it).
        var options = new AnswererOptions(4, SamplerKind.Uniform, 3);
        File.WriteAllText(results, "{\"id\":1000,\"prediction\":\"A\"}\n{\"id\":1001,\"prediction\":\"3\"}\n");
        ResultsManifest.Describe("vsibench", modelA, options, "float32", false, mini.DatasetPath).Write(ResultsManifest.PathFor(results));
        string[] args = ["evaluate", "vsibench", "--data", mini.Root, "--frames", "4", "--max-new-tokens", "3", "--device", "cpu", "--out", results];

        var (code, _, error) = CliInvocation.Invoke([.. args, "--model", modelB]);
        Assert.Equal(1, code);
        Assert.Contains("holds answers from a different run", error);
        Assert.Contains($"model.folder: saved {Path.GetFullPath(modelA)}, now {Path.GetFullPath(modelB)}", error);
        Assert.Contains("model.weights_sha256", error);
        Assert.Contains("--force-new", error);

        // The same folder with other weights (re-initialised in place) is caught by the content hash.
        TinyCheckpoint.Create(modelA, seed: 3);
        (code, _, error) = CliInvocation.Invoke([.. args, "--model", modelA]);
        Assert.Equal(1, code);
        Assert.Contains("model.weights_sha256", error);
        Assert.DoesNotContain("model.folder", error);

        // Other settings with the saved model: named too.
        (code, _, error) = CliInvocation.Invoke([.. args.Select(a => a == "4" ? "8" : a), "--dry-run"]);
        Assert.Equal(1, code);
        Assert.Contains("frames: saved 4, now 8", error);
        Assert.Contains("answerer: saved model, now dry-run", error);

        // --force-new starts over and keeps the old answers and manifest aside.
        (code, var output, error) = CliInvocation.Invoke("evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results, "--force-new");
        Assert.True(code == 0, output + error);
        Assert.Contains("--force-new: starting over", output);
        var backups = Directory.GetFiles(mini.Root, "results.jsonl.bak-*");
        Assert.Single(backups);
        Assert.Equal(2, CliProcess.CountLines(backups[0]));
        Assert.Single(Directory.GetFiles(mini.Root, "results.run.json.bak-*"));
        Assert.Equal(MiniVsiBench.QuestionCount, Results(results).Count);
        Assert.Equal("dry-run", RunManifest.Read(ResultsManifest.PathFor(results)).Fields["answerer"]);

        // And the same settings resume as before.
        (code, output, error) = CliInvocation.Invoke("evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results);
        Assert.True(code == 0, error);
        Assert.Contains("40 of 40 already answered", output);
    }

    [Fact]
    public void Merge_RefusesShardsOfDifferentRuns_AndKeepsTheSharedManifest()
    {
        var mini = new MiniVsiBench("merge-manifest");
        string[] shards = [Path.Combine(mini.Root, "s0.jsonl"), Path.Combine(mini.Root, "s1.jsonl")];
        File.WriteAllText(shards[0], "{\"id\":1000,\"prediction\":\"A\"}\n");
        File.WriteAllText(shards[1], "{\"id\":1001,\"prediction\":\"B\"}\n");
        var options = new AnswererOptions(16, SamplerKind.Uniform, 1024);
        ResultsManifest.Describe("vsibench", null, options, "-", false, mini.DatasetPath).Write(ResultsManifest.PathFor(shards[0]));
        ResultsManifest.Describe("vsibench", null, options with { Frames = 8 }, "-", false, mini.DatasetPath).Write(ResultsManifest.PathFor(shards[1]));
        string merged = Path.Combine(mini.Root, "merged.jsonl");

        var (code, _, error) = CliInvocation.Invoke(["merge", "--out", merged, .. shards]);
        Assert.Equal(1, code);
        Assert.Contains("comes from a different run", error);
        Assert.Contains("frames 16 vs 8", error);
        Assert.False(File.Exists(merged));

        ResultsManifest.Describe("vsibench", null, options, "-", false, mini.DatasetPath).Write(ResultsManifest.PathFor(shards[1]));
        (code, _, error) = CliInvocation.Invoke(["merge", "--out", merged, .. shards]);
        Assert.True(code == 0, error);
        Assert.Equal("16", RunManifest.Read(ResultsManifest.PathFor(merged)).Fields["frames"]);
    }

    [Fact]
    public void Resume_RefusesAResultsFileWithoutManifest()
    {
        var mini = new MiniVsiBench("no-manifest");
        string results = Path.Combine(mini.Root, "results.jsonl");
        File.WriteAllText(results, "{\"id\":1000,\"prediction\":\"A\"}\n");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results);
        Assert.Equal(1, code);
        Assert.Contains("has no run manifest", error);
        Assert.Equal(1, CliProcess.CountLines(results));
    }

    [Fact]
    public void UnreadableVideo_StopsByDefault_OrIsSkippedRecordedScoredAsWrongAndRetried()
    {
        var mini = new MiniVsiBench("on-error", realVideos: true);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string model = TestPaths.NewTempDir("tiny-on-error");
        TinyCheckpoint.Create(model);
        string broken = Path.Combine(mini.Root, "arkitscenes", "mini00.mp4");   // 6 questions
        File.WriteAllText(broken, "not a video");
        string[] args = ["evaluate", "vsibench", "--model", model, "--data", mini.Root, "--frames", "4", "--device", "cpu",
            "--max-new-tokens", "2", "--out", results];

        var (code, _, error) = CliInvocation.Invoke(args);
        Assert.Equal(1, code);
        Assert.Contains(broken, error);

        (code, var output, error) = CliInvocation.Invoke([.. args, "--on-error", "skip"]);
        Assert.True(code == 0, output + error);
        Assert.Contains("6 question(s) of 1 unreadable video(s) were skipped and count as wrong", output);
        Assert.Contains($"arkitscenes/mini00 (6 question(s)): {broken}", output);
        var skipped = SkippedQuestions.Read(SkippedQuestions.PathFor(results));
        Assert.Equal(["1000", "1001", "1002", "1003", "1004", "1005"], skipped.Select(q => q.Id));
        Assert.All(skipped, q => Assert.Contains(broken, q.Reason));
        Assert.Equal(MiniVsiBench.QuestionCount - 6, Results(results).Count);
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(mini.Root, "results.metrics.json"))))
            Assert.Equal(MiniVsiBench.QuestionCount, metrics.RootElement.GetProperty("rewards").EnumerateObject().Count());
        // The notebooks' folder scoring reads results files, not the list of skipped questions beside them.
        string folder = TestPaths.NewTempDir("score-folder");
        foreach (string file in new[] { results, SkippedQuestions.PathFor(results) }) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        Assert.Equal(["results"], VsiBench.ScoreFolder(folder, mini.Dataset, VsiBenchScoringProfile.SpatialMllm, MissingPredictions.CountAsWrong).Keys);

        // Fixed, the next run answers exactly the skipped questions.
        File.Delete(broken);
        Video.TestVideos.TestSrc(Path.Combine(mini.Root, "arkitscenes"), "mini00.mp4", frames: 12, width: 96, height: 72);
        (code, output, error) = CliInvocation.Invoke([.. args, "--on-error", "skip"]);
        Assert.True(code == 0, output + error);
        Assert.Contains("34 of 40 already answered, 6 to go", output);
        Assert.Equal(MiniVsiBench.QuestionCount, Results(results).Count);
        Assert.False(File.Exists(SkippedQuestions.PathFor(results)));
    }

    [Theory]
    [InlineData("scene_name", "../../../etc/passwd")]
    [InlineData("scene_name", "/etc/passwd")]
    [InlineData("dataset", "..")]
    [InlineData("dataset", "/tmp")]
    public void VsiBenchRowPathsOutsideData_AreRefusedNamingTheRow(string field, string value)
    {
        var mini = new MiniVsiBench("paths");
        var lines = File.ReadAllLines(mini.DatasetPath);
        var row = JsonNode.Parse(lines[0])!.AsObject();
        row[field] = value;
        lines[0] = row.ToJsonString();
        File.WriteAllLines(mini.DatasetPath, lines);

        var (code, _, error) = CliInvocation.Invoke("evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", Path.Combine(mini.Root, "r.jsonl"));
        Assert.Equal(1, code);
        Assert.Contains($"question {row["id"]}", error);
        Assert.Contains($"{field} '{value}'", error);
        Assert.Contains("absolute paths and '..' are refused", error);
    }

    [Fact]
    public void ScanQaSceneIdOutsideData_IsRefused()
    {
        var mini = new MiniScanQa("paths-scanqa");
        string official = Path.Combine(mini.Root, "ScanQA_v1.0_val.json");
        File.WriteAllText(official, """[{"question_id": "val-scene0000-0", "scene_id": "../outside", "question": "What?", "answers": ["a"]}]""");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "scanqa", "--dry-run", "--data", mini.Root, "--dataset", official, "--out", Path.Combine(mini.Root, "r.jsonl"));
        Assert.Equal(1, code);
        Assert.Contains("question scanqa_val-scene0000-0_0: scene_id '../outside'", error);
    }

    [Theory]
    [InlineData("--workers", "0", "--workers must be 1 or more; got 0")]
    [InlineData("--workers", "-1", "--workers must be 1 or more; got -1")]
    [InlineData("--frames", "0", "--frames must be 1 or more; got 0")]
    [InlineData("--max-new-tokens", "-5", "--max-new-tokens must be 1 or more; got -5")]
    [InlineData("--batch-size", "0", "--batch-size must be 1 or more; got 0")]
    [InlineData("--prefetch-videos", "-1", "--prefetch-videos must be 0 (decode in line) or more; got -1")]
    [InlineData("--decode-threads", "0", "--decode-threads must be 1 or more; got 0")]
    public void BadCounts_AreRefused(string option, string value, string message)
    {
        var mini = new MiniVsiBench("bad-count");
        string results = Path.Combine(mini.Root, "r.jsonl");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results, option, value);
        Assert.Equal(1, code);
        Assert.Equal($"error: {message}.", error.Trim());
        Assert.False(File.Exists(results));
    }

    [Fact]
    public void OutIsAFolder_IsACleanError()
    {
        var mini = new MiniVsiBench("out-dir");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", mini.Root);
        Assert.Equal(1, code);
        Assert.Equal($"error: --out {mini.Root} is a folder; name a results file, e.g. --out {Path.Combine(mini.Root, "results.jsonl")}.", error.Trim());
    }

    [Fact]
    public void ScanQaIdsWithoutUnderscore_StayDistinct()
    {
        Assert.Equal("val-scene0011-0", ScanQa.NormalizeId("val-scene0011-0"));
        Assert.Equal("scanqa_val-scene0011-0_0", ScanQa.NormalizeId("scanqa_val-scene0011-0_3"));
        string dir = TestPaths.NewTempDir("scanqa-ids");
        string data = Path.Combine(dir, "val.json");
        File.WriteAllText(data, """
            [{"id": "val-scene0011-0", "video": "scannet/scene0011_00", "conversations": [{"from": "human", "value": "Q1"}], "metadata": {"answers": ["chair"]}},
             {"id": "val-scene0011-1", "video": "scannet/scene0011_00", "conversations": [{"from": "human", "value": "Q2"}], "metadata": {"answers": ["table"]}}]
            """);
        var predictions = new[] { new Prediction("val-scene0011-0", "chair"), new Prediction("val-scene0011-1", "table") };
        Assert.Equal(1.0, ScanQa.Score(predictions, ScanQa.Load(data)).ExactMatch);
    }
}
