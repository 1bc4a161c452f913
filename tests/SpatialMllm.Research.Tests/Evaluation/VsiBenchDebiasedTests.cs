using System.Text.Json;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

/// <summary>VSI-Bench-Debiased beside the full set: from a 'pruned' column, or from an id list that overrides it.</summary>
public class VsiBenchDebiasedTests
{
    /// <summary>Two counting and two rel-distance questions, one of each pruned; predictions right on 1, 2, 4 and wrong on 3.
    /// Full: counting 1.0, rel-distance 0.5 → All 0.75. Debiased (ids 1, 3): counting 1.0, rel-distance 0 → All 0.5.
    /// With the id list {2, 4}: counting 1.0, rel-distance 1.0 → All 1.0.</summary>
    internal static (string Dataset, string Predictions) Files()
    {
        string dir = TestPaths.NewTempDir("vsibench-debiased");
        string dataset = Path.Combine(dir, "test.jsonl");
        File.WriteAllLines(dataset, new[]
        {
            (1, "object_counting", (string[]?)null, "4", false),
            (2, "object_counting", null, "2", true),
            (3, "object_rel_distance", ["A. sofa", "B. lamp"], "A", false),
            (4, "object_rel_distance", ["A. sofa", "B. lamp"], "B", true),
        }.Select(r => JsonSerializer.Serialize(new
        {
            id = r.Item1, dataset = "scannet", scene_name = "scene0001_00", question_type = r.Item2,
            question = "Which object is closest?", options = r.Item3, ground_truth = r.Item4, pruned = r.Item5,
        })));
        string predictions = Path.Combine(dir, "p.jsonl");
        File.WriteAllLines(predictions, new[] { (1, "4"), (2, "2"), (3, "B"), (4, "B") }
            .Select(p => JsonSerializer.Serialize(new { id = p.Item1, prediction = p.Item2 })));
        return (dataset, predictions);
    }

    [Fact]
    public void ScoreDebiased_FromPrunedColumn_LeavesOutPrunedQuestionsAndTheirPredictions()
    {
        var (datasetPath, predictionsPath) = Files();
        var data = VsiBench.Load(datasetPath);
        var predictions = PredictionFile.Read(predictionsPath);
        var full = VsiBench.Score(predictions, data, VsiBenchScoringProfile.SpatialMllm);
        var debiased = VsiBench.ScoreDebiased(predictions, data, VsiBenchScoringProfile.SpatialMllm)!;

        Assert.Equal(0.75, full.All.Macro, 12);
        Assert.Equal([1, 3], debiased.Questions.Select(q => q.Id));
        Assert.Equal(0.5, debiased.All.Macro, 12);
        Assert.Equal(0.5, debiased.All.Micro, 12);
        Assert.Null(VsiBench.ScoreDebiased(predictions, data.Select(VsiBenchSubset.Debiased), VsiBenchScoringProfile.SpatialMllm));
    }


    [Fact]
    public void DebiasedIds_UnknownId_IsAnErrorNamingTheFile()
    {
        var (datasetPath, _) = Files();
        string ids = Path.Combine(Path.GetDirectoryName(datasetPath)!, "ids.txt");
        File.WriteAllLines(ids, ["1", "77"]);
        var e = Assert.Throws<DataFileException>(() => VsiBench.Load(datasetPath, debiasedIdsPath: ids));
        Assert.Contains(ids, e.Message);
        Assert.Contains("77", e.Message);
    }
}
