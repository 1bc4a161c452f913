using System.Globalization;
using System.Text;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Scenes;

namespace SpatialMllm.Research.Training;

/// <summary>A score with its 95 % bootstrap interval (percentiles of the resampled scores), on 0–100.</summary>
public sealed record ScoreInterval(double Value, double Low, double High)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Value,5:F1} [{Low,5:F1}, {High,5:F1}]");
}

/// <summary>One question type (or the overall score) on held-out scenes: the model, the mean-answer baseline and chance.</summary>
/// <param name="Metric">"MRA" (numbers) or "Acc" (choices).</param>
/// <param name="Chance">A uniform guess's expected accuracy (choices); null for numbers.</param>
public sealed record HeldOutTypeScore(string Type, string Metric, int Count, ScoreInterval Model, ScoreInterval MeanAnswer, double? Chance)
{
    /// <summary>Whether the model's score is above the bar the issue sets: chance for choices, the baseline for numbers.</summary>
    public bool BeatsBar => Metric == "MRA" ? Model.Value > MeanAnswer.Value : Model.Value > Chance;
}

/// <summary>One held-out question answered.</summary>
public sealed record HeldOutAnswer(VsiBenchQuestion Question, string Answer, double Score, string BaselineAnswer, double BaselineScore);

/// <summary>What <see cref="SyntheticSceneEvaluation.Evaluate"/> measured; scores on 0–100.</summary>
/// <param name="Overall">VSI-Bench's overall (macro over its 8 tasks, the three relative directions merged first).</param>
/// <param name="Gain">Overall minus the baseline's overall, with the interval of the paired difference.</param>
public sealed record HeldOutReport(IReadOnlyList<int> Seeds, IReadOnlyList<HeldOutTypeScore> Types, ScoreInterval Overall,
    ScoreInterval BaselineOverall, ScoreInterval Gain, IReadOnlyList<HeldOutAnswer> Answers)
{
    public string FormatTable()
    {
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"held-out scenes: {Seeds.Count} (seeds {Seeds.Min()}–{Seeds.Max()}), {Answers.Count} questions; 95 % bootstrap intervals over scenes");
        s.AppendLine($"{"question type",-28} {"n",4} {"metric",6}  {"model",-20} {"mean answer",-20} {"chance",6}  beats");
        foreach (var t in Types)
            s.AppendLine(CultureInfo.InvariantCulture,
                $"{t.Type,-28} {t.Count,4} {t.Metric,6}  {t.Model,-20} {t.MeanAnswer,-20} {(t.Chance is double c ? c.ToString("F1", CultureInfo.InvariantCulture) : "–"),6}  {(t.BeatsBar ? "yes" : "NO")}");
        s.AppendLine($"{"overall (VSI macro)",-28} {Answers.Count,4} {"",6}  {Overall,-20} {BaselineOverall,-20}");
        s.AppendLine($"{"overall − baseline",-28} {"",4} {"",6}  {Gain,-20}");
        return s.ToString();
    }
}

/// <summary>
/// A model measured honestly on synthetic scenes it never saw: each scene's VSI-Bench-style questions
/// (<see cref="SceneQuestions"/>) answered from its video, scored by VSI-Bench's own scorer (exact match, MRA), beside a
/// mean-answer baseline fitted on the training questions (per numeric type the mean training answer, per choice type the
/// most frequent training letter) and chance (a uniform guess among the options). Intervals: percentile bootstrap over
/// scenes (questions of one scene are not independent), 1000 resamples from a fixed seed.
/// </summary>
public static class SyntheticSceneEvaluation
{
    /// <summary>The baseline's answer per question type.</summary>
    public static IReadOnlyDictionary<string, string> FitMeanAnswers(IEnumerable<VsiBenchQuestion> training) =>
        training.GroupBy(q => q.QuestionType).ToDictionary(g => g.Key, g => VsiBenchQuestionTypes.IsNumeric(g.Key)
            ? g.Average(q => double.Parse(q.GroundTruth, CultureInfo.InvariantCulture)).ToString("R", CultureInfo.InvariantCulture)
            : g.GroupBy(q => q.GroundTruth).OrderByDescending(a => a.Count()).ThenBy(a => a.Key, StringComparer.Ordinal).First().Key);

    /// <summary>The baseline of <paramref name="recipe"/>'s training questions (rendered only as far as the questions need).</summary>
    public static IReadOnlyDictionary<string, string> FitMeanAnswers(RoomsTinyRecipe recipe) =>
        FitMeanAnswers(recipe.TrainSeeds.SelectMany(seed => SyntheticScene.Create(seed, recipe.Scene).Questions(perType: recipe.PerType)));

    /// <summary>Answers every question of the scenes of <paramref name="seeds"/> (videos written into
    /// <paramref name="videoFolder"/>) with <paramref name="model"/> as <paramref name="recipe"/> trains it to answer.</summary>
    public static HeldOutReport Evaluate(SpatialMllmModel model, RoomsTinyRecipe recipe, IReadOnlyList<int> seeds,
        IReadOnlyDictionary<string, string> meanAnswers, string videoFolder, Action<string>? log = null, int resamples = 1000)
    {
        var answers = new List<HeldOutAnswer>();
        foreach (int seed in seeds)
        {
            var scene = SyntheticScene.Create(seed, recipe.Scene);
            var questions = scene.Questions(firstId: answers.Count, perType: recipe.PerType);
            string video = scene.WriteVideo(Path.Combine(videoFolder, SyntheticBenchmark.VideoPath(scene)));
            using var features = model.EncodeVideo(video, recipe.Sampler, recipe.AnswerOptions);
            var replies = model.AnswerAll(features, [.. questions.Select(VsiBenchPrompts.Build)], recipe.AnswerOptions);
            foreach (var (q, reply) in questions.Zip(replies))
            {
                string baseline = meanAnswers.TryGetValue(q.QuestionType, out var b) ? b : throw new ArgumentException(
                    $"the baseline has no answer for {q.QuestionType} (its training questions have none of that type)", nameof(meanAnswers));
                answers.Add(new HeldOutAnswer(q, reply.Text, VsiBench.ScoreAnswer(q, reply.Text).Score, baseline, VsiBench.ScoreAnswer(q, baseline).Score));
            }
            log?.Invoke($"{scene.SceneName}: {questions.Count} questions answered");
        }
        return Score(seeds, answers, resamples);
    }

    /// <summary>Aggregates answered questions into per-type and overall scores with bootstrap intervals over scenes.</summary>
    public static HeldOutReport Score(IReadOnlyList<int> seeds, IReadOnlyList<HeldOutAnswer> answers, int resamples = 1000)
    {
        var byScene = answers.GroupBy(a => a.Question.SceneName).Select(g => g.ToList()).ToList();
        var (modelTypes, modelAll) = Aggregate(answers, a => a.Score);
        var (baseTypes, baseAll) = Aggregate(answers, a => a.BaselineScore);
        var samples = new List<(Dictionary<string, double> Model, double ModelAll, Dictionary<string, double> Base, double BaseAll)>();
        var rng = new Random(0);
        for (int r = 0; r < resamples; r++)
        {
            var drawn = Enumerable.Range(0, byScene.Count).SelectMany(_ => byScene[rng.Next(byScene.Count)]).ToList();
            var (m, mAll) = Aggregate(drawn, a => a.Score);
            var (b, bAll) = Aggregate(drawn, a => a.BaselineScore);
            samples.Add((m, mAll, b, bAll));
        }
        ScoreInterval Interval(double value, IEnumerable<double> resampled)
        {
            var sorted = resampled.Order().ToArray();
            return sorted.Length == 0 ? new(value, value, value)
                : new(value, sorted[(int)Math.Floor(0.025 * (sorted.Length - 1))], sorted[(int)Math.Ceiling(0.975 * (sorted.Length - 1))]);
        }
        var types = VsiBenchQuestionTypes.All.Where(modelTypes.ContainsKey).Select(type =>
        {
            var ofType = answers.Where(a => a.Question.QuestionType == type).ToList();
            bool numeric = VsiBenchQuestionTypes.IsNumeric(type);
            return new HeldOutTypeScore(type, numeric ? "MRA" : "Acc", ofType.Count,
                Interval(modelTypes[type], samples.Where(s => s.Model.ContainsKey(type)).Select(s => s.Model[type])),
                Interval(baseTypes[type], samples.Where(s => s.Base.ContainsKey(type)).Select(s => s.Base[type])),
                numeric ? null : 100.0 * ofType.Average(a => 1.0 / a.Question.Options!.Count));
        }).ToList();
        return new HeldOutReport(seeds, types, Interval(modelAll, samples.Select(s => s.ModelAll)), Interval(baseAll, samples.Select(s => s.BaseAll)),
            Interval(modelAll - baseAll, samples.Select(s => s.ModelAll - s.BaseAll)), answers);
    }

    /// <summary>Per-type means and VSI-Bench's overall through the scorer's own aggregation, on 0–100.</summary>
    static (Dictionary<string, double> Types, double All) Aggregate(IReadOnlyList<HeldOutAnswer> answers, Func<HeldOutAnswer, double> score)
    {
        var scores = VsiBenchScores.Aggregate(VsiBenchScoringProfile.SpatialMllm.Name,
            [.. answers.Select(a => new VsiBenchQuestionScore(a.Question.Id, a.Question.QuestionType, "", a.Question.GroundTruth, score(a), ""))]);
        return (scores.PerQuestionType.ToDictionary(kv => kv.Key, kv => 100 * kv.Value.Score), 100 * scores.All.Macro);
    }
}
