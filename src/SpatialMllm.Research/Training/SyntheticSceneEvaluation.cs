using System.Globalization;
using System.Text;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using TorchSharp;

namespace SpatialMllm.Research.Training;

/// <summary>A score with its 95 % bootstrap interval (percentiles of the resampled scores), on 0–100 (or, for a
/// geometry error, in that measure's own unit).</summary>
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
    /// <summary>The sampler's settings (<see cref="IFrameSampler.Settings"/>) the answers were given from; empty when not recorded.</summary>
    public string Sampler { get; init; } = "";

    /// <summary>Per scene (in <see cref="Seeds"/>' order), the frames the model answered from; empty when not recorded.</summary>
    public IReadOnlyList<IReadOnlyList<int>> Frames { get; init; } = [];

    public string FormatTable()
    {
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"held-out scenes: {Seeds.Count} (seeds {Seeds.Min()}–{Seeds.Max()}), {Answers.Count} questions; 95 % bootstrap intervals over scenes");
        if (Sampler.Length > 0)
            s.AppendLine(CultureInfo.InvariantCulture, $"frames: {Sampler}, {Frames.Average(f => f.Count):0.##} a scene on average");
        s.AppendLine($"{"question type",-28} {"n",4} {"metric",6}  {"model",-20} {"mean answer",-20} {"chance",6}  beats");
        foreach (var t in Types)
            s.AppendLine(CultureInfo.InvariantCulture,
                $"{t.Type,-28} {t.Count,4} {t.Metric,6}  {t.Model,-20} {t.MeanAnswer,-20} {(t.Chance is double c ? c.ToString("F1", CultureInfo.InvariantCulture) : "–"),6}  {(t.BeatsBar ? "yes" : "NO")}");
        s.AppendLine($"{"overall (VSI macro)",-28} {Answers.Count,4} {"",6}  {Overall,-20} {BaselineOverall,-20}");
        s.AppendLine($"{"overall − baseline",-28} {"",4} {"",6}  {Gain,-20}");
        return s.ToString();
    }
}

/// <summary>One question type's (or the overall) difference between two reports on the same scenes, on 0–100.</summary>
public sealed record HeldOutDifference(string Type, ScoreInterval Difference);

/// <summary>What <see cref="SyntheticSceneEvaluation.Compare"/> measured: one report minus another, per type and overall.</summary>
public sealed record HeldOutComparison(IReadOnlyList<HeldOutDifference> Types, ScoreInterval Overall);

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
    /// <paramref name="videoFolder"/>) with <paramref name="model"/> as <paramref name="recipe"/> trains it to answer: its
    /// frames (<see cref="RoomsTinyRecipe.Sampler"/>, unless <paramref name="sampler"/> chooses them otherwise) and its
    /// answer options (<see cref="RoomsTinyRecipe.AnswerOptions"/>, whose fusion an answer-time ablation changes).
    /// <paramref name="otherRoom"/>: the control for how much the answers owe to the room; each scene's questions are
    /// answered from the next scene's video (the last from the first's), so only what a model reads from the question's
    /// words, and from rooms in general, can score.</summary>
    public static HeldOutReport Evaluate(SpatialMllmModel model, RoomsTinyRecipe recipe, IReadOnlyList<int> seeds,
        IReadOnlyDictionary<string, string> meanAnswers, string videoFolder, Action<string>? log = null, int resamples = 1000,
        IFrameSampler? sampler = null, bool otherRoom = false)
    {
        if (otherRoom && seeds.Count < 2) throw new ArgumentException("answering from another room's video needs at least 2 scenes", nameof(seeds));
        sampler ??= recipe.Sampler;
        var answers = new List<HeldOutAnswer>();
        var frames = new List<IReadOnlyList<int>>();
        // The scenes are rendered and their videos written in parallel (the CPU's work), then answered in order.
        var scenes = new (SyntheticScene Scene, string Video, IReadOnlyList<VsiBenchQuestion> Questions)[seeds.Count];
        Parallel.For(0, seeds.Count, i =>
        {
            var scene = SyntheticScene.Create(seeds[i], recipe.Scene);
            scenes[i] = (scene, scene.Write(Path.Combine(videoFolder, SyntheticBenchmark.VideoPath(scene, recipe.VideoFormat)), recipe.VideoFormat),
                scene.Questions(perType: recipe.PerType));
        });
        for (int i = 0; i < scenes.Length; i++)
        {
            var (scene, _, ofScene) = scenes[i];
            var shown = scenes[otherRoom ? (i + 1) % scenes.Length : i];
            int firstId = answers.Count;
            var questions = ofScene.Select(q => q with { Id = firstId + q.Id }).ToList();
            using var decoded = model.DecodeVideo(shown.Video, sampler, recipe.AnswerOptions);
            using var features = model.EncodeDecoded(decoded, recipe.AnswerOptions);
            frames.Add(decoded.Selection.Indices);
            var replies = model.AnswerAll(features, [.. questions.Select(VsiBenchPrompts.Build)], recipe.AnswerOptions);
            foreach (var (q, reply) in questions.Zip(replies))
            {
                string baseline = meanAnswers.TryGetValue(q.QuestionType, out var b) ? b : throw new ArgumentException(
                    $"the baseline has no answer for {q.QuestionType} (its training questions have none of that type)", nameof(meanAnswers));
                answers.Add(new HeldOutAnswer(q, reply.Text, VsiBench.ScoreAnswer(q, reply.Text).Score, baseline, VsiBench.ScoreAnswer(q, baseline).Score));
            }
            log?.Invoke($"{scene.SceneName}: {questions.Count} questions answered from frames {string.Join(",", decoded.Selection.Indices)}" +
                (otherRoom ? $" of {shown.Scene.SceneName}" : ""));
        }
        return Score(seeds, answers, resamples) with { Sampler = sampler.Settings, Frames = frames };
    }

    /// <summary>
    /// The sampler <c>rooms-tiny evaluate --sampler</c> names, at <paramref name="recipe"/>'s frame count: "uniform" (the
    /// recipe's, as it trains) or "space-aware" (the paper's greedy voxel coverage over all of a scene's frames, on the
    /// point maps of <paramref name="modelFolder"/>'s own VGGT, which sees them at the size it was trained on). Dispose it
    /// to release a VGGT it loaded.
    /// </summary>
    public static IFrameSampler Sampler(string name, RoomsTinyRecipe recipe, string modelFolder) => name switch
    {
        "uniform" => recipe.Sampler,
        "space-aware" => FrameSampler.SpaceAware(recipe.Frames, modelFolder, candidates: recipe.Scene.Frames, device: torch.CPU,
            inputWidth: recipe.Scene.Width / VggtPatch * VggtPatch),
        _ => throw new ArgumentException($"the sampler is uniform or space-aware, not '{name}'", nameof(name)),
    };

    const int VggtPatch = 14;

    /// <summary>Aggregates answered questions into per-type and overall scores with bootstrap intervals over scenes.</summary>
    public static HeldOutReport Score(IReadOnlyList<int> seeds, IReadOnlyList<HeldOutAnswer> answers, int resamples = 1000)
    {
        var byScene = answers.GroupBy(a => a.Question.SceneName).Select(g => g.ToList()).ToList();
        var (modelTypes, modelAll) = Aggregate(answers, a => a.Score);
        var (baseTypes, baseAll) = Aggregate(answers, a => a.BaselineScore);
        var samples = Resample(byScene, resamples).Select(drawn =>
        {
            var flat = drawn.SelectMany(scene => scene).ToList();
            var (m, mAll) = Aggregate(flat, a => a.Score);
            var (b, bAll) = Aggregate(flat, a => a.BaselineScore);
            return (Model: m, ModelAll: mAll, Base: b, BaseAll: bAll);
        }).ToList();
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

    /// <summary>
    /// <paramref name="a"/> minus <paramref name="b"/>, per question type and overall, with 95 % intervals of the paired
    /// difference: both answered the same scenes' questions (two fusions, samplers or models), and each resample draws
    /// scenes once for both, so what the scenes share cancels.
    /// </summary>
    public static HeldOutComparison Compare(HeldOutReport a, HeldOutReport b, int resamples = 1000)
    {
        var scenesA = a.Answers.GroupBy(x => x.Question.SceneName).ToDictionary(g => g.Key, g => g.ToList());
        var scenesB = b.Answers.GroupBy(x => x.Question.SceneName).ToDictionary(g => g.Key, g => g.ToList());
        if (!scenesA.Keys.Order().SequenceEqual(scenesB.Keys.Order()))
            throw new ArgumentException($"the reports answered different scenes ({scenesA.Count} and {scenesB.Count}; " +
                $"{scenesA.Keys.Except(scenesB.Keys).Concat(scenesB.Keys.Except(scenesA.Keys)).FirstOrDefault()} is in one only): a paired difference needs the same ones");
        var pairs = scenesA.Keys.Order(StringComparer.Ordinal).Select(scene => (A: scenesA[scene], B: scenesB[scene])).ToList();
        var (typesA, allA) = Aggregate(a.Answers, x => x.Score);
        var (typesB, allB) = Aggregate(b.Answers, x => x.Score);
        var samples = Resample(pairs, resamples).Select(drawn =>
        {
            var (ta, oa) = Aggregate(drawn.SelectMany(p => p.A).ToList(), x => x.Score);
            var (tb, ob) = Aggregate(drawn.SelectMany(p => p.B).ToList(), x => x.Score);
            return (Types: ta.Keys.Intersect(tb.Keys).ToDictionary(t => t, t => ta[t] - tb[t]), Overall: oa - ob);
        }).ToList();
        var types = VsiBenchQuestionTypes.All.Where(t => typesA.ContainsKey(t) && typesB.ContainsKey(t)).Select(t => new HeldOutDifference(t,
            Interval(typesA[t] - typesB[t], samples.Where(s => s.Types.ContainsKey(t)).Select(s => s.Types[t])))).ToList();
        return new HeldOutComparison(types, Interval(allA - allB, samples.Select(s => s.Overall)));
    }

    /// <summary>Bootstrap resamples of <paramref name="units"/> (scenes): each draws as many units as there are, with
    /// replacement, from a fixed seed, so the same units give the same intervals.</summary>
    internal static IEnumerable<List<T>> Resample<T>(IReadOnlyList<T> units, int resamples)
    {
        var rng = new Random(0);
        for (int r = 0; r < resamples; r++)
            yield return [.. Enumerable.Range(0, units.Count).Select(_ => units[rng.Next(units.Count)])];
    }

    /// <summary>The 2.5th and 97.5th percentiles of <paramref name="resampled"/> around <paramref name="value"/>.</summary>
    internal static ScoreInterval Interval(double value, IEnumerable<double> resampled)
    {
        var sorted = resampled.Order().ToArray();
        return sorted.Length == 0 ? new(value, value, value)
            : new(value, sorted[(int)Math.Floor(0.025 * (sorted.Length - 1))], sorted[(int)Math.Ceiling(0.975 * (sorted.Length - 1))]);
    }

    /// <summary>Per-type means and VSI-Bench's overall through the scorer's own aggregation, on 0–100.</summary>
    static (Dictionary<string, double> Types, double All) Aggregate(IReadOnlyList<HeldOutAnswer> answers, Func<HeldOutAnswer, double> score)
    {
        var scores = VsiBenchScores.Aggregate(VsiBenchScoringProfile.SpatialMllm.Name,
            [.. answers.Select(a => new VsiBenchQuestionScore(a.Question.Id, a.Question.QuestionType, "", a.Question.GroundTruth, score(a), ""))]);
        return (scores.PerQuestionType.ToDictionary(kv => kv.Key, kv => 100 * kv.Value.Score), 100 * scores.All.Macro);
    }
}
