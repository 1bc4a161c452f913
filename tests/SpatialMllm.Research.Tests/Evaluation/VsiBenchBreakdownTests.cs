using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

/// <summary>Per-task, per-dataset and per-file views of VSI-Bench scores, and the published numbers (spec §8).</summary>
public class VsiBenchBreakdownTests
{
    static string VsiJsonl => Path.Combine(TestPaths.Data, "vsibench", "test.jsonl");
    static string PredictionsA => Path.Combine(TestPaths.Shared, "fixtures", "vsibench-scoring", "vsibench-predictions-a.jsonl");

    [Fact]
    public void Per_task_scores_follow_the_paper_columns_and_average_to_macro_all()
    {
        var scores = VsiBench.Score(PredictionsA, VsiBench.Load(VsiJsonl), VsiBenchScoringProfile.SpatialMllm);
        var tasks = scores.PerTask;
        Assert.Equal(VsiBenchQuestionTypes.Tasks, tasks.Select(t => t.Task));
        Assert.Equal(["MRA", "MRA", "MRA", "MRA", "Acc", "Acc", "Acc", "Acc"], tasks.Select(t => t.Metric));
        Assert.Equal(5130, tasks.Sum(t => t.Count));
        Assert.Equal(217 + 373 + 378, tasks.Single(t => t.Task == VsiBenchQuestionTypes.RelDirectionTask).Count);
        Assert.Equal(scores.All.Macro, tasks.Average(t => t.Score), 12);
        Assert.Equal(scores.PerQuestionType[VsiBenchQuestionTypes.ObjectCounting].Score, tasks[0].Score);
    }

    [Fact]
    public void Scores_by_dataset_partition_the_questions()
    {
        var dataset = VsiBench.Load(VsiJsonl);
        var predictions = PredictionFile.Read(PredictionsA);
        var whole = VsiBench.Score(predictions, dataset, VsiBenchScoringProfile.Official);
        var byDataset = VsiBench.ScoreByDataset(predictions, dataset, VsiBenchScoringProfile.Official);

        Assert.Equal(["arkitscenes", "scannet", "scannetpp"], byDataset.Keys);
        Assert.Equal(5130, byDataset.Values.Sum(s => s.Questions.Count));
        Assert.All(byDataset, kv => Assert.All(kv.Value.Questions, q => Assert.Equal(kv.Key, dataset[q.Id].Dataset)));
        Assert.All(byDataset.Values, s => Assert.Equal("official", s.Profile));
        // Micro All is a per-question mean, so the parts weighted by size give the whole.
        Assert.Equal(whole.All.Micro, byDataset.Values.Sum(s => s.All.Micro * s.Questions.Count) / 5130, 12);
    }

    [Fact]
    public void A_results_folder_is_scored_file_by_file_skipping_shards_and_metrics()
    {
        string dir = TestPaths.NewTempDir("results-folder");
        File.Copy(PredictionsA, Path.Combine(dir, "full.jsonl"));
        File.WriteAllLines(Path.Combine(dir, "vision-only.jsonl"), File.ReadAllLines(PredictionsA).Select(l => l.Replace("\"prediction\": \"", "\"prediction\": \"x")));
        File.WriteAllText(Path.Combine(dir, "full.metrics.json"), "{}");
        File.WriteAllText(Path.Combine(dir, "full.shard-0-of-2.jsonl"), "not json");

        var scores = VsiBench.ScoreFolder(dir, VsiBench.Load(VsiJsonl), VsiBenchScoringProfile.SpatialMllm);

        Assert.Equal(["full", "vision-only"], scores.Keys);
        Assert.Equal(0.3436409212499568, scores["full"].All.Macro, 12);
        Assert.True(scores["vision-only"].All.Macro < scores["full"].All.Macro);
        Assert.Throws<FileNotFoundException>(() => VsiBench.ScoreFolder(TestPaths.NewTempDir("empty"), VsiBench.Load(VsiJsonl), VsiBenchScoringProfile.SpatialMllm));
    }

    [Fact]
    public void Published_readme_rows_are_consistent_with_the_question_counts()
    {
        // Spec §8.1: micro All = (2490·Acc + 2640·MRA) / 5130 for every row.
        Assert.Equal(6, PublishedResults.VsiBenchV11.Count);
        Assert.All(PublishedResults.VsiBenchV11, r => Assert.True(Math.Abs(r.MicroAll - (2490 * r.MicroAcc + 2640 * r.MicroMra) / 5130) < 0.01, r.Model));
        Assert.Equal(51.13, PublishedResults.VsiBenchV11.Single(r => r.Model == "Spatial-MLLM-v1.1-Instruct-135K").MicroAll);
    }

    [Fact]
    public void Published_paper_rows_have_every_task_and_spatial_mllm_averages_per_question()
    {
        Assert.Equal(12, PublishedResults.VsiBenchPaper.Count);
        Assert.All(PublishedResults.VsiBenchPaper, r => Assert.Equal(VsiBenchQuestionTypes.Tasks, r.Tasks.Keys));
        Assert.Equal(Enumerable.Range(1, 12), PublishedResults.VsiBenchPaper.Select(r => r.Rank).Order());
        // Spec §8.2: Spatial-MLLM's Avg is the per-question mean over the 5130 questions (48.38 → 48.4).
        var row = PublishedResults.Paper("spatial-mllm-4b");
        int[] counts = [565, 834, 953, 288, 710, 968, 194, 618];
        double micro = VsiBenchQuestionTypes.Tasks.Zip(counts).Sum(p => row[p.First] * p.Second) / 5130;
        Assert.Equal(48.38, micro, 2);
        Assert.Equal(row.Average, Math.Round(micro, 1));
        // GPT-4o's (copied from VSI-Bench) is the mean of the 8 columns.
        Assert.Equal(PublishedResults.Paper("GPT-4o").Average, Math.Round(PublishedResults.Paper("GPT-4o").Tasks.Values.Average(), 1));
        Assert.Throws<ArgumentException>(() => PublishedResults.Paper("nope"));
    }
}
