using System.Text.Json;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

public class VsiBenchScoringTests
{
    static string VsiJsonl => Path.Combine(TestPaths.Data, "vsibench", "test.jsonl");
    static string Scoring(string name) => Path.Combine(TestPaths.Shared, "fixtures", "vsibench-scoring", name);
    static string Examples => Path.Combine(TestPaths.Shared, "fixtures", "vsibench-examples.jsonl");

    [Fact]
    public void SpatialMllmProfile_ReproducesSeedFixture_EveryRewardAndAggregate()
    {
        var dataset = VsiBench.Load(VsiJsonl);
        var scores = VsiBench.Score(Scoring("vsibench-predictions-a.jsonl"), dataset, VsiBenchScoringProfile.SpatialMllm);
        using var expected = JsonDocument.Parse(File.ReadAllText(Scoring("vsibench-expected-a.json")));
        var root = expected.RootElement;

        var rewards = root.GetProperty("rewards");
        Assert.Equal(5130, rewards.EnumerateObject().Count());
        Assert.Equal(5130, scores.Questions.Count);
        int checkedRewards = 0;
        foreach (var q in scores.Questions)
        {
            double want = rewards.GetProperty(q.Id.ToString()).GetDouble();
            Assert.True(Math.Abs(want - q.Score) <= 1e-6, $"id {q.Id} ({q.QuestionType}) {JsonSerializer.Serialize(q.Prediction)}: expected {want}, got {q.Score} ({q.Reading})");
            checkedRewards++;
        }
        Assert.Equal(5130, checkedRewards);

        var perType = root.GetProperty("per_question_type");
        Assert.Equal(10, scores.PerQuestionType.Count);
        foreach (var t in perType.EnumerateObject())
        {
            Assert.Equal(t.Value.GetProperty("count").GetInt32(), scores.PerQuestionType[t.Name].Count);
            Assert.Equal(t.Value.GetProperty("score").GetDouble(), scores.PerQuestionType[t.Name].Score, 1e-6);
        }
        void Pair(string key, MicroMacro m)
        {
            Assert.Equal(root.GetProperty(key).GetProperty("micro").GetDouble(), m.Micro, 1e-6);
            Assert.Equal(root.GetProperty(key).GetProperty("macro").GetDouble(), m.Macro, 1e-6);
        }
        Pair("acc", scores.Acc);
        Pair("mra", scores.Mra);
        Pair("all", scores.All);
        // Tighter than asked: the aggregates agree to rounding (different summation order only).
        Assert.Equal(0.3436409212499568, scores.All.Macro, 1e-12);
        Assert.Equal(0.34181286556969376, scores.All.Micro, 1e-12);
    }

    [Fact]
    public void MetricsJson_HasTheFixtureKeys()
    {
        var dataset = VsiBench.Load(VsiJsonl);
        var scores = VsiBench.Score(Scoring("vsibench-predictions-a.jsonl"), dataset, VsiBenchScoringProfile.SpatialMllm);
        var json = scores.ToMetricsJson();
        using var expected = JsonDocument.Parse(File.ReadAllText(Scoring("vsibench-expected-a.json")));
        foreach (var key in expected.RootElement.EnumerateObject().Select(p => p.Name)) Assert.True(json.ContainsKey(key), key);
        Assert.Equal(expected.RootElement.GetProperty("per_question_type").EnumerateObject().Select(p => p.Name),
            json["per_question_type"]!.AsObject().Select(p => p.Key));
    }

    static IReadOnlyList<Prediction> ExamplePredictions() =>
    [
        new("900001", "three"), new("900002", "2.2 meters"), new("900003", "165"), new("900004", "25"),
        new("900005", "B. table"), new("900006", "A"), new("900007", "(C)"), new("900008", "d."),
        new("900009", "The answer is B."), new("900010", "<answer>A</answer>"),
    ];

    [Fact]
    public void SpecExamples_PerSampleScoresAndAggregates_BothProfiles()
    {
        var dataset = VsiBench.Load(Examples);
        var official = VsiBench.Score(ExamplePredictions(), dataset, VsiBenchScoringProfile.Official);
        Assert.Equal([0.0, 0.9, 0.9, 0.6, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0], official.Questions.Select(q => q.Score));
        Assert.Equal(0.6666666666666666, official.RelDirection!.Value, 15);
        Assert.Equal(0.5083333333333333, official.All.Macro, 15);

        var seed = VsiBench.Score(ExamplePredictions(), dataset, VsiBenchScoringProfile.SpatialMllm);
        Assert.Equal([0.0, 0.0, 0.8999999761581421, 0.5, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0], seed.Questions.Select(q => q.Score));
        Assert.Equal(0.5, seed.Acc.Micro, 15);
        Assert.Equal(0.3499999940395355, seed.Mra.Micro, 15);
        Assert.Equal(0.4399999976158142, seed.All.Micro, 15);
        Assert.Equal(0.41666666666666663, seed.Acc.Macro, 15);
        Assert.Equal(0.3499999940395355, seed.Mra.Macro, 15);
        Assert.Equal(0.3833333303531011, seed.All.Macro, 15);
    }

    [Theory]
    // ŷ, y, official (≤, double), spatial-mllm (<, float32): spec §4.3 boundary table.
    [InlineData(1.5, 1.0, 0.1, 0.0)]
    [InlineData(1.45, 1.0, 0.2, 0.10000000149011612)]
    [InlineData(2.2, 2.0, 0.9, 0.800000011920929)]
    [InlineData(165, 150, 0.9, 0.8999999761581421)]
    [InlineData(25, 20, 0.6, 0.5)]
    public void Mra_BoundaryCases(double prediction, double truth, double official, double seed)
    {
        var q = new VsiBenchQuestion(1, "scannet", "s", VsiBenchQuestionTypes.ObjectAbsDistance, "q", null,
            truth.ToString(System.Globalization.CultureInfo.InvariantCulture), null);
        string p = prediction.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(official, VsiBenchScoringProfile.Official.Score(q, p).Score, 15);
        Assert.Equal(seed, VsiBenchScoringProfile.SpatialMllm.Score(q, p).Score, 15);
    }

    [Theory]
    [InlineData("B", 1)] [InlineData("b", 1)] [InlineData("B.", 1)] [InlineData("B. table", 1)] [InlineData("b..", 1)]
    [InlineData("(B)", 0)] [InlineData("B)", 0)] [InlineData("B:", 0)] [InlineData("**B**", 0)] [InlineData("The answer is B", 0)]
    [InlineData(" B", 0)] [InlineData("B.\n", 0)] [InlineData("B\nbecause", 0)]
    public void Official_MultipleChoice_FirstTokenRule(string prediction, double expected)
    {
        var q = new VsiBenchQuestion(1, "scannet", "s", VsiBenchQuestionTypes.RoutePlanning, "q", ["A. x", "B. y"], "B", null);
        Assert.Equal(expected, VsiBenchScoringProfile.Official.Score(q, prediction).Score);
    }

    [Theory]
    [InlineData("<answer>B</answer>", 1)] [InlineData("<answer>A</answer> then <answer> b. </answer>", 1)]
    [InlineData("  b\n", 1)] [InlineData("B...", 1)] [InlineData("B. table", 0)] [InlineData("(B)", 0)]
    public void SpatialMllm_MultipleChoice_CleanedExactMatch(string prediction, double expected)
    {
        var q = new VsiBenchQuestion(1, "scannet", "s", VsiBenchQuestionTypes.RoutePlanning, "q", ["A. x", "B. y"], "B", null);
        Assert.Equal(expected, VsiBenchScoringProfile.SpatialMllm.Score(q, prediction).Score);
    }

    [Theory]
    [InlineData("2.2 meters", 0.9, 0.0)]   // official reads the first token; the seed needs the whole string to parse
    [InlineData("1,000", 0.0, 0.0)]        // official: "1,000" fails float(); seed: 1000 vs 2 → 0
    [InlineData("2.", 1.0, 1.0)]
    [InlineData("2_0", 0.0, 0.0)]          // Python float accepts underscores between digits: 20 vs 2 → 0
    [InlineData("two", 0.0, 0.0)]
    [InlineData("nan", 0.0, 0.0)]
    [InlineData("<answer>2</answer>", 0.0, 1.0)]
    public void Numeric_Parsing(string prediction, double official, double seed)
    {
        var q = new VsiBenchQuestion(1, "scannet", "s", VsiBenchQuestionTypes.ObjectAbsDistance, "q", null, "2", null);
        Assert.Equal(official, VsiBenchScoringProfile.Official.Score(q, prediction).Score, 15);
        Assert.Equal(seed, VsiBenchScoringProfile.SpatialMllm.Score(q, prediction).Score, 15);
    }

    [Fact]
    public void OfficialTolerances_MatchNumpyLinspace()
    {
        double[] expected = [0.5, 0.44999999999999996, 0.4, 0.35, 0.30000000000000004, 0.25, 0.19999999999999996,
            0.15000000000000002, 0.10000000000000009, 0.050000000000000044];
        Assert.Equal(expected, VsiBenchScoringProfile.OfficialProfile.Tolerances);
    }

    [Fact]
    public void Diff_ExplainsEveryChangedQuestion()
    {
        var dataset = VsiBench.Load(Examples);
        var changes = VsiBench.Diff(ExamplePredictions(), dataset, VsiBenchScoringProfile.SpatialMllm, VsiBenchScoringProfile.Official);
        Assert.Equal([900002, 900003, 900004, 900005, 900010], changes.Select(c => c.Id));
        var relDistance = changes.Single(c => c.Id == 900005);
        Assert.Equal("\"b. table\" ≠ \"b\"", relDistance.ReadingA);
        Assert.Equal("first token \"B\" = \"B\"", relDistance.ReadingB);
        Assert.Contains("not a number", changes.Single(c => c.Id == 900002).ReadingA);
    }

    [Fact]
    public void ThirdPartyPredictions_OfficialProfileRecomputesNonStrictMra()
    {
        // InternVL3.5 runs on the ARKitScenes subset; their own sample_mra used a strict "<", so recompute (SOURCES.md).
        var dataset = VsiBench.Load(VsiJsonl);
        var rows = File.ReadLines(Path.Combine(TestPaths.Data, "vsibench", "third_party_predictions", "tis_internvl3_5_8b_arkitscenes_predictions.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("id", out _)).ToList();
        var predictions = rows.Select(e => new Prediction(e.GetProperty("id").GetInt32().ToString(), e.GetProperty("predicted_answer").GetString()!)).ToList();
        Assert.Equal(1451, predictions.Count);
        var scores = VsiBench.Score(predictions, dataset, VsiBenchScoringProfile.Official, MissingPredictions.Skip);
        Assert.Equal(1451, scores.Questions.Count);
        var byId = scores.Questions.ToDictionary(q => q.Id);
        int boundaryCases = 0;
        foreach (var row in rows)
        {
            var score = byId[row.GetProperty("id").GetInt32()];
            if (row.TryGetProperty("correct", out var correct))
            {
                Assert.Equal(correct.GetBoolean() ? 1.0 : 0.0, score.Score);
                continue;
            }
            double theirs = row.GetProperty("sample_mra").GetDouble();
            if (score.Score == theirs) continue;
            // Only a relative error sitting on a tolerance may score higher under the official "≤" than under their "<".
            double relativeError = row.GetProperty("relative_error").GetDouble();
            Assert.True(score.Score > theirs, $"id {score.Id}");
            Assert.Contains(VsiBenchScoringProfile.OfficialProfile.Tolerances, t => Math.Abs(t - relativeError) < 1e-9);
            boundaryCases++;
        }
        Assert.Equal(61, boundaryCases); // the questions of this subset whose answer sits exactly on a tolerance
    }

    [Fact]
    public void MissingDuplicateUnknownIds_ClearMessageWithCounts()
    {
        var dataset = VsiBench.Load(Examples);
        var predictions = ExamplePredictions().Take(8).Append(new Prediction("900001", "3")).Append(new Prediction("42", "A")).ToList();
        var e = Assert.Throws<PredictionMismatchException>(() => VsiBench.Score(predictions, dataset, VsiBenchScoringProfile.Official));
        Assert.Contains("8 of 10 questions have a prediction", e.Message);
        Assert.Contains("1 id(s) predicted more than once: 900001", e.Message);
        Assert.Contains("1 prediction id(s) not in the question set: 42", e.Message);
        Assert.Contains("2 question(s) without a prediction: 900009, 900010", e.Message);

        var partial = ExamplePredictions().Take(8).ToList();
        Assert.Throws<PredictionMismatchException>(() => VsiBench.Score(partial, dataset, VsiBenchScoringProfile.Official));
        Assert.Equal(8, VsiBench.Score(partial, dataset, VsiBenchScoringProfile.Official, MissingPredictions.Skip).Questions.Count);
        var wrong = VsiBench.Score(partial, dataset, VsiBenchScoringProfile.Official, MissingPredictions.CountAsWrong);
        Assert.Equal(10, wrong.Questions.Count);
        Assert.Equal(0.0, wrong.Questions.Single(q => q.Id == 900010).Score);
    }
}
