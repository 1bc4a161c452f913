using SpatialMllm.Research.Checkpoints;
using System.Diagnostics;
using System.Text.Json;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Tests.Evaluation;

namespace SpatialMllm.Research.Tests.Cli;

/// <summary>The CLI commands: in-process through System.CommandLine, and as real processes (kill and resume, workers).</summary>
public class CliEvaluationTests
{
    static Process Start(string workingDirectory, params string[] args) => CliProcess.Start(workingDirectory, args);

    static Dictionary<string, string> Results(string path) => PredictionFile.Read(path).ToDictionary(p => p.Id, p => p.Text);

    [Fact]
    public void ScoreVsiBench_Json_ReproducesFixture()
    {
        string fixture = Path.Combine(TestPaths.Shared, "fixtures", "vsibench-scoring");
        var (code, output, error) = CliInvocation.Invoke("score", "vsibench", "--predictions", Path.Combine(fixture, "vsibench-predictions-a.jsonl"),
            "--dataset", Path.Combine(TestPaths.Data, "vsibench", "test.jsonl"), "--json");
        Assert.True(code == 0, error);
        using var got = JsonDocument.Parse(output);
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(fixture, "vsibench-expected-a.json")));
        foreach (string key in new[] { "acc", "mra", "all" })
            foreach (string avg in new[] { "micro", "macro" })
                Assert.Equal(expected.RootElement.GetProperty(key).GetProperty(avg).GetDouble(), got.RootElement.GetProperty(key).GetProperty(avg).GetDouble(), 1e-6);
        Assert.Equal(5130, got.RootElement.GetProperty("rewards").EnumerateObject().Count());
    }

    [Fact]
    public void ScoreVsiBench_Table_AndCompare()
    {
        string examples = Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl");
        string dir = TestPaths.NewTempDir("cli-compare");
        string predictions = Path.Combine(dir, "p.jsonl");
        File.WriteAllLines(predictions, new (int, string)[] { (900001, "three"), (900002, "2.2 meters"), (900003, "165"), (900004, "25"), (900005, "B. table"),
            (900006, "A"), (900007, "(C)"), (900008, "d."), (900009, "The answer is B."), (900010, "<answer>A</answer>") }
            .Select(p => JsonSerializer.Serialize(new { id = p.Item1, prediction = p.Item2 })));
        var (code, output, error) = CliInvocation.Invoke("score", "vsibench", "--predictions", predictions, "--dataset", examples, "--profile", "official", "--compare", "spatial-mllm");
        Assert.True(code == 0, error);
        Assert.Contains("All               44.00    38.33", output);   // spatial-mllm micro/macro
        Assert.Contains("All               54.00    50.83", output);   // official
        Assert.Contains("5 question(s) score differently", output);
    }

    [Fact]
    public void ScoreVsiBench_DuplicatesAndMissing_ExitOneWithCounts()
    {
        string dir = TestPaths.NewTempDir("cli-dup");
        string predictions = Path.Combine(dir, "p.jsonl");
        File.WriteAllText(predictions, "{\"id\": 900001, \"prediction\": \"3\"}\n{\"id\": 900001, \"prediction\": \"3\"}\n{\"id\": 7, \"prediction\": \"A\"}\n");
        var (code, _, error) = CliInvocation.Invoke("score", "vsibench", "--predictions", predictions, "--dataset", Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl"));
        Assert.Equal(1, code);
        Assert.Contains("1 id(s) predicted more than once: 900001", error);
        Assert.Contains("1 prediction id(s) not in the question set: 7", error);
        Assert.Contains("9 question(s) without a prediction", error);
    }

    [Fact]
    public void ScoreScanQa_SeedResultsJson()
    {
        var data = ScanQa.Load(Path.Combine(TestPaths.Data, "scanqa", "ScanQA_v1.0_val.json"));
        string dir = TestPaths.NewTempDir("cli-scanqa");
        string predictions = Path.Combine(dir, "results.json");
        File.WriteAllText(predictions, JsonSerializer.Serialize(data.Questions.Select(q => new { sample_id = q.Id, pred_response = q.Answers[0] })));
        var (code, output, error) = CliInvocation.Invoke("score", "scanqa", "--predictions", predictions, "--dataset", data.SourcePath, "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(1.0, json.RootElement.GetProperty("EM").GetDouble());
        Assert.Equal(4675, json.RootElement.GetProperty("count").GetInt32());
    }

    [Fact]
    public void Evaluate_RealProcessKilledMidRun_ResumesToTheUninterruptedResult()
    {
        var mini = new MiniVsiBench("cli-kill");
        string reference = Path.Combine(mini.Root, "reference.jsonl");
        EvaluationRunner.Run(mini.Items(), new DryRunAnswerer(), reference, TextWriter.Null);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string[] args = ["evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results];

        using (var run = Start(mini.Root, [.. args, "--dry-run-seconds", "0.1"]))
        {
            var clock = Stopwatch.StartNew();
            while (CountLines(results) < 5 && clock.Elapsed < TimeSpan.FromSeconds(60) && !run.HasExited) Thread.Sleep(20);
            if (run.HasExited) Assert.Fail("the run finished before it could be killed: " + run.StandardError.ReadToEnd());
            run.Kill(entireProcessTree: true);
            run.WaitForExit();
        }
        int answeredBeforeKill = CountLines(results);
        Assert.InRange(answeredBeforeKill, 5, MiniVsiBench.QuestionCount - 1);
        File.AppendAllText(results, "{\"id\": 14");   // what a kill during a write leaves

        using var resume = Start(mini.Root, args);
        string output = resume.StandardOutput.ReadToEnd();
        resume.WaitForExit();
        Assert.True(resume.ExitCode == 0, output + resume.StandardError.ReadToEnd());
        Assert.Contains("incomplete", output);
        Assert.Contains($"{answeredBeforeKill} of 40 already answered", output);
        Assert.Contains("progress 40/40", output);   // piped: plain progress lines

        var ids = PredictionFile.Read(results).Select(p => p.Id).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Equal(Results(reference), Results(results));
        Assert.True(File.Exists(Path.Combine(mini.Root, "results.metrics.json")));
    }

    [Fact]
    public void Evaluate_TwoWorkerProcesses_MergeToTheSingleRun()
    {
        var mini = new MiniVsiBench("cli-workers");
        string reference = Path.Combine(mini.Root, "reference.jsonl");
        EvaluationRunner.Run(mini.Items(), new DryRunAnswerer(), reference, TextWriter.Null);
        string results = Path.Combine(mini.Root, "results.jsonl");

        using var run = Start(mini.Root, "evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results, "--workers", "2", "--profile", "official");
        string output = run.StandardOutput.ReadToEnd();
        run.WaitForExit();
        Assert.True(run.ExitCode == 0, output + run.StandardError.ReadToEnd());
        Assert.Contains("[worker 0]", output);
        Assert.Contains("[worker 1]", output);
        Assert.Equal(Results(reference), Results(results));
        Assert.Empty(Directory.GetFiles(mini.Root, "results.shard-*"));
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(mini.Root, "results.metrics.json")));
        Assert.Equal("official", metrics.RootElement.GetProperty("profile").GetString());
    }

    [Fact]
    public void Evaluate_WithAMissingModelFolder_NamesIt()
    {
        var mini = new MiniVsiBench("cli-nomodel");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "vsibench", "--model", "/nowhere", "--data", mini.Root, "--device", "cpu",
            "--out", Path.Combine(mini.Root, "r.jsonl"));
        Assert.NotEqual(0, code);
        Assert.Contains("/nowhere", error);
    }

    [Fact]
    public void Evaluate_WithTheTinyModel_AnswersEveryQuestionOnceAndResumes()
    {
        var mini = new MiniVsiBench("cli-tiny", realVideos: true);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string model = TestPaths.NewTempDir("tiny-model");
        TinyCheckpoint.Create(model);
        string[] args = ["evaluate", "vsibench", "--model", model, "--data", mini.Root, "--frames", "4",
            "--device", "cpu", "--max-new-tokens", "3", "--out", results];
        var (code, output, error) = CliInvocation.Invoke(args);
        Assert.True(code == 0, output + error);
        var first = Results(results);
        Assert.Equal(MiniVsiBench.QuestionCount, first.Count);
        Assert.True(File.Exists(Path.Combine(mini.Root, "results.metrics.json")));

        // A rerun finds everything done: nothing is answered twice and nothing changes.
        var (again, _, againError) = CliInvocation.Invoke(args);
        Assert.True(again == 0, againError);
        Assert.Equal(MiniVsiBench.QuestionCount, File.ReadAllLines(results).Count(l => l.Trim().Length > 0));
        Assert.Equal(first, Results(results));
    }

    [Fact]
    public void EvaluateScanQa_WithTheTinyModel_AnswersEveryQuestionOnceAndResumes()
    {
        var mini = new MiniScanQa("cli-scanqa-tiny", realVideos: true);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string model = TestPaths.NewTempDir("tiny-model-scanqa");
        TinyCheckpoint.Create(model);
        string[] args = ["evaluate", "scanqa", "--model", model, "--data", mini.Root, "--frames", "4",
            "--device", "cpu", "--max-new-tokens", "3", "--out", results];
        var (code, output, error) = CliInvocation.Invoke(args);
        Assert.True(code == 0, output + error);
        var first = Results(results);
        Assert.Equal(mini.Dataset.Questions.Select(q => q.Id).Order(), first.Keys.Order());
        Assert.All(first.Values, answer => Assert.Equal(answer.Trim(), answer));   // stored .strip()-ped
        Assert.Contains("ScanQA, 9 questions, 9 predictions", output);
        Assert.Contains("CIDEr", output);
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(mini.Root, "results.metrics.json"))))
            Assert.Equal(MiniScanQa.QuestionCount, metrics.RootElement.GetProperty("count").GetInt32());

        // A rerun finds everything done: nothing is answered twice and nothing changes.
        var (again, againOutput, againError) = CliInvocation.Invoke(args);
        Assert.True(again == 0, againError);
        Assert.Contains("9 of 9 already answered, 0 to go", againOutput);
        Assert.Equal(MiniScanQa.QuestionCount, File.ReadAllLines(results).Count(l => l.Trim().Length > 0));
        Assert.Equal(first, Results(results));
    }

    [Fact]
    public void EvaluateScanQa_ResizesFramesTo476x644()
    {
        string model = TestPaths.NewTempDir("tiny-model-resize");
        TinyCheckpoint.Create(model);
        using var loaded = SpatialMllm.Research.Models.SpatialMllmModel.Load(model, TorchSharp.torch.CPU);
        using var frames = TorchSharp.torch.zeros([4, 3, 72, 96], TorchSharp.torch.ScalarType.Byte);
        using var features = loaded.EncodeFrames(frames, new SpatialMllm.Research.Models.AnswerOptions(MaxNewTokens: 3, ResizedSize: ScanQaVideos.ResizedSize));
        Assert.Equal(new SpatialMllm.Research.Processing.GridThw(2, 34, 46), features.Grid);
    }

    [Fact]
    public void EvaluateScanQa_DryRunTwoWorkerProcesses_MergeToTheSingleRun()
    {
        var mini = new MiniScanQa("cli-scanqa-workers");
        string single = Path.Combine(mini.Root, "single.jsonl");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "scanqa", "--dry-run", "--data", mini.Root, "--out", single);
        Assert.True(code == 0, error);
        Assert.Equal(MiniScanQa.QuestionCount, Results(single).Count);

        string results = Path.Combine(mini.Root, "results.jsonl");
        using var run = Start(mini.Root, "evaluate", "scanqa", "--dry-run", "--data", mini.Root, "--out", results, "--workers", "2");
        string output = run.StandardOutput.ReadToEnd();
        run.WaitForExit();
        Assert.True(run.ExitCode == 0, output + run.StandardError.ReadToEnd());
        Assert.Contains("[worker 0]", output);
        Assert.Contains("[worker 1]", output);
        Assert.Contains("merged 2 worker results: 9 answers", output);
        Assert.Equal(Results(single), Results(results));
        Assert.Empty(Directory.GetFiles(mini.Root, "results.shard-*"));
        Assert.Equal(File.ReadAllText(Path.Combine(mini.Root, "single.metrics.json")), File.ReadAllText(Path.Combine(mini.Root, "results.metrics.json")));
    }

    [Fact]
    public void EvaluateScanQa_MissingSceneVideo_IsNamedBeforeAnyAnswer()
    {
        var mini = new MiniScanQa("cli-scanqa-missing");
        File.Delete(Path.Combine(mini.Root, "scene0001_00.mp4"));
        string results = Path.Combine(mini.Root, "r.jsonl");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "scanqa", "--dry-run", "--data", mini.Root, "--out", results);
        Assert.Equal(1, code);
        Assert.Contains("scannet/scene0001_00", error);
        Assert.False(File.Exists(results));
    }

    [Fact]
    public void Merge_Command_ReportsConflicts()
    {
        string dir = TestPaths.NewTempDir("cli-merge");
        File.WriteAllText(Path.Combine(dir, "a.jsonl"), "{\"id\": 1, \"prediction\": \"A\"}\n");
        File.WriteAllText(Path.Combine(dir, "b.jsonl"), "{\"id\": 1, \"prediction\": \"B\"}\n");
        var (code, _, error) = CliInvocation.Invoke("merge", "--out", Path.Combine(dir, "m.jsonl"), Path.Combine(dir, "a.jsonl"), Path.Combine(dir, "b.jsonl"));
        Assert.Equal(1, code);
        Assert.Contains("1 id(s) have different answers", error);
    }

    static int CountLines(string path) => CliProcess.CountLines(path);

    [Fact]
    public void Evaluate_WithTheTinyModel_DecodingAheadAndBatched_EqualsInLineOneByOne()
    {
        var mini = new MiniVsiBench("ahead-tiny", realVideos: true);
        string model = TestPaths.NewTempDir("tiny-model-ahead");
        TinyCheckpoint.Create(model);
        string inLine = Path.Combine(mini.Root, "in-line.jsonl"), ahead = Path.Combine(mini.Root, "ahead.jsonl");
        string[] common = ["evaluate", "vsibench", "--model", model, "--data", mini.Root, "--frames", "4", "--device", "cpu", "--max-new-tokens", "3"];

        var (code, output, error) = CliProcess.Finish(CliProcess.Start(mini.Root, [.. common, "--out", inLine, "--prefetch-videos", "0", "--batch-size", "1"]));
        Assert.True(code == 0, output + error);
        (code, output, error) = CliProcess.Finish(CliProcess.Start(mini.Root, [.. common, "--out", ahead, "--prefetch-videos", "3", "--decode-threads", "2", "--batch-size", "4"]));
        Assert.True(code == 0, output + error);

        var expected = Results(inLine);
        Assert.Equal(MiniVsiBench.QuestionCount, expected.Count);
        Assert.Equal(expected, Results(ahead));
        Assert.Equal(File.ReadAllText(inLine), File.ReadAllText(ahead));   // and in the same order
    }

    [Fact]
    public void ScoreScanQa_Table_SaysMeteorWasNotComputedAndWhy()
    {
        var data = ScanQa.Load(Path.Combine(TestPaths.Data, "scanqa", "ScanQA_v1.0_val.json"));
        string predictions = Path.Combine(TestPaths.NewTempDir("cli-scanqa-meteor"), "p.jsonl");
        File.WriteAllLines(predictions, data.Questions.Select(q => System.Text.Json.JsonSerializer.Serialize(new { id = q.Id, prediction = q.Answers[0] })));
        var (code, output, error) = CliInvocation.Invoke("score", "scanqa", "--predictions", predictions, "--dataset", data.SourcePath,
            "--meteor-jar", "/nonexistent/meteor-1.5.jar");
        Assert.True(code == 0, error);
        Assert.Contains("METEOR   not computed: meteor jar not found: /nonexistent/meteor-1.5.jar", output);
        Assert.Contains("EM         100.00", output);
    }

    [Fact]
    public void EvaluateScanQa_DryRun_TableAndMetricsSayWhyMeteorWasNotComputed()
    {
        var mini = new MiniScanQa("cli-scanqa-meteor-eval");
        string results = Path.Combine(mini.Root, "r.jsonl");
        var (code, output, error) = CliInvocation.Invoke("evaluate", "scanqa", "--dry-run", "--data", mini.Root, "--out", results,
            "--meteor-jar", "/nonexistent/meteor-1.5.jar");
        Assert.True(code == 0, error);
        Assert.Contains("METEOR   not computed: meteor jar not found: /nonexistent/meteor-1.5.jar", output);
        using var metrics = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(mini.Root, "r.metrics.json")));
        Assert.Equal(System.Text.Json.JsonValueKind.Null, metrics.RootElement.GetProperty("METEOR").ValueKind);
        Assert.Equal("meteor jar not found: /nonexistent/meteor-1.5.jar", metrics.RootElement.GetProperty("METEOR_not_computed").GetString());
    }

    [Fact]
    public void ScoreVsiBench_Cli_PrintsDebiasedBesideFull_AndIdListOverridesTheColumn()
    {
        var (datasetPath, predictionsPath) = VsiBenchDebiasedTests.Files();
        var (code, output, error) = CliInvocation.Invoke("score", "vsibench", "--predictions", predictionsPath, "--dataset", datasetPath);
        Assert.True(code == 0, error);
        Assert.Contains("VSI-Bench-Debiased (pruned == false): 2 of 4 scored questions", output);
        Assert.Contains("All               75.00    75.00", output);
        Assert.Contains("All               50.00    50.00", output);

        string ids = Path.Combine(Path.GetDirectoryName(datasetPath)!, "debiased-ids.txt");
        File.WriteAllLines(ids, ["2", "4"]);
        (code, output, error) = CliInvocation.Invoke("score", "vsibench", "--predictions", predictionsPath, "--dataset", datasetPath, "--debiased-ids", ids, "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(0.75, json.RootElement.GetProperty("all").GetProperty("macro").GetDouble(), 12);
        Assert.Equal(1.0, json.RootElement.GetProperty("debiased").GetProperty("all").GetProperty("macro").GetDouble(), 12);
    }

    [Fact]
    public void Score_ReadsTheDatasetFromTheRunManifest_WhenNoneIsGiven()
    {
        var mini = new MiniVsiBench("score-from-manifest");
        string results = Path.Combine(mini.Root, "r.jsonl");
        var (code, _, error) = CliInvocation.Invoke("evaluate", "vsibench", "--dry-run", "--data", mini.Root, "--out", results);
        Assert.True(code == 0, error);

        (code, var output, error) = CliInvocation.Invoke("score", "vsibench", "--predictions", results);
        Assert.True(code == 0, error);
        Assert.Contains($"dataset {Path.GetFullPath(mini.DatasetPath)} (Full, {MiniVsiBench.QuestionCount} questions)", output);

        (code, _, error) = CliInvocation.Invoke("score", "scanqa", "--predictions", results);
        Assert.Equal(1, code);
        Assert.Contains("holds answers to vsibench", error);
        Assert.Contains("spatial-mllm score vsibench", error);

        File.Move(mini.DatasetPath, mini.DatasetPath + ".moved");
        (code, _, error) = CliInvocation.Invoke("score", "vsibench", "--predictions", results);
        Assert.Equal(1, code);
        Assert.Contains(Path.GetFullPath(mini.DatasetPath), error);
        Assert.Contains("pass --dataset", error);
    }
}
