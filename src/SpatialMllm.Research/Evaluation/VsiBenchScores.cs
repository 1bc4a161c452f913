using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SpatialMllm.Research.Evaluation;

public sealed record TypeScore(double Score, int Count);

/// <summary>One of the 8 VSI-Bench tasks (the papers' columns): rel-direction is the unweighted mean of its three types.</summary>
/// <param name="Task">The question type, or <see cref="VsiBenchQuestionTypes.RelDirectionTask"/>.</param>
/// <param name="Label">The papers' column name, e.g. "Obj. Count".</param>
/// <param name="Metric">"MRA" or "Acc".</param>
public sealed record TaskScore(string Task, string Label, string Metric, double Score, int Count);

/// <summary>A pair of averages: <c>Micro</c> over questions, <c>Macro</c> over tasks (rel-direction merged first).</summary>
public sealed record MicroMacro(double Micro, double Macro);

/// <summary>
/// Scores of one prediction set under one profile. Aggregation follows the seed's calculate_metrics, whose macro All is the
/// official VSI-Bench "overall": per-type means; the rel-direction types averaged (unweighted) into one task; Macro Acc
/// over the 4 multiple-choice tasks, Macro MRA over the 4 numeric ones, Macro All over all 8. Micro = plain means over
/// questions. A subset missing some types averages the types present (both references would mis-handle it).
/// </summary>
public sealed record VsiBenchScores(
    string Profile,
    IReadOnlyList<VsiBenchQuestionScore> Questions,
    IReadOnlyDictionary<string, TypeScore> PerQuestionType,
    double? RelDirection,
    MicroMacro Acc,
    MicroMacro Mra,
    MicroMacro All)
{
    internal static VsiBenchScores Aggregate(string profile, IReadOnlyList<VsiBenchQuestionScore> questions)
    {
        // Ordinal key order, as pandas groupby sorts it, so the JSON lists types in the seed's order.
        var perType = new SortedDictionary<string, TypeScore>(StringComparer.Ordinal);
        foreach (var group in questions.GroupBy(q => q.QuestionType))
            perType[group.Key] = new TypeScore(Mean(group.Select(q => q.Score)), group.Count());

        double? relDirection = perType.Where(kv => VsiBenchQuestionTypes.IsRelDirection(kv.Key)) is var dirs && dirs.Any()
            ? Mean(dirs.Select(kv => kv.Value.Score)) : null;
        IEnumerable<double> Tasks(Func<string, bool> include)
        {
            if (relDirection is double d && include(VsiBenchQuestionTypes.ObjectRelDirectionEasy)) yield return d;
            foreach (var (type, score) in perType)
                if (!VsiBenchQuestionTypes.IsRelDirection(type) && include(type)) yield return score.Score;
        }
        double MicroOver(Func<string, bool> include) => Mean(questions.Where(q => include(q.QuestionType)).Select(q => q.Score));

        return new VsiBenchScores(profile, questions, perType, relDirection,
            new MicroMacro(MicroOver(VsiBenchQuestionTypes.IsMultipleChoice), Mean(Tasks(VsiBenchQuestionTypes.IsMultipleChoice))),
            new MicroMacro(MicroOver(VsiBenchQuestionTypes.IsNumeric), Mean(Tasks(VsiBenchQuestionTypes.IsNumeric))),
            new MicroMacro(MicroOver(_ => true), Mean(Tasks(_ => true))));
    }

    /// <summary>The 8 tasks present, in the papers' column order (numeric first, then multiple choice).</summary>
    public IReadOnlyList<TaskScore> PerTask
    {
        get
        {
            var tasks = new List<TaskScore>();
            foreach (string task in VsiBenchQuestionTypes.Tasks)
            {
                if (task == VsiBenchQuestionTypes.RelDirectionTask)
                {
                    if (RelDirection is double dir)
                        tasks.Add(new TaskScore(task, VsiBenchQuestionTypes.TaskLabel(task), "Acc", dir,
                            VsiBenchQuestionTypes.RelDirection.Sum(t => PerQuestionType.TryGetValue(t, out var s) ? s.Count : 0)));
                }
                else if (PerQuestionType.TryGetValue(task, out var score))
                    tasks.Add(new TaskScore(task, VsiBenchQuestionTypes.TaskLabel(task), VsiBenchQuestionTypes.IsNumeric(task) ? "MRA" : "Acc", score.Score, score.Count));
            }
            return tasks;
        }
    }

    /// <summary>The seed's safe_mean: 0 for nothing.</summary>
    static double Mean(IEnumerable<double> values)
    {
        double sum = 0;
        int n = 0;
        foreach (double v in values) { sum += v; n++; }
        return n == 0 ? 0.0 : sum / n;
    }

    /// <summary>The seed's metrics JSON (the keys of metrics_*.json and the fixture vsibench-expected-a.json), plus
    /// "profile" so a number never travels without the rules that made it.</summary>
    public JsonObject ToMetricsJson(bool includeRewards = true)
    {
        var perType = new JsonObject();
        foreach (var (type, s) in PerQuestionType) perType[type] = new JsonObject { ["score"] = s.Score, ["count"] = s.Count };
        JsonObject Pair(MicroMacro m) => new() { ["micro"] = m.Micro, ["macro"] = m.Macro };
        var json = new JsonObject
        {
            ["profile"] = Profile,
            ["per_question_type"] = perType,
            ["acc"] = Pair(Acc),
            ["mra"] = Pair(Mra),
            ["all"] = Pair(All),
        };
        if (includeRewards)
        {
            var rewards = new JsonObject();
            foreach (var q in Questions.OrderBy(q => q.Id)) rewards[q.Id.ToString(CultureInfo.InvariantCulture)] = q.Score;
            json["rewards"] = rewards;
        }
        return json;
    }

    public string ToMetricsJsonText(bool includeRewards = true) =>
        ToMetricsJson(includeRewards).ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>The per-task table (×100) in the papers' column order, rel-direction with its three parts, then the averages.</summary>
    public string FormatTable()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"VSI-Bench, profile {Profile}, {Questions.Count} questions");
        sb.AppendLine($"{"task",-14} {"n",6} {"score",8}");
        void Row(string label, int count, double score) =>
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{label,-14} {count,6} {score * 100,8:F2}"));
        void TypeRow(string type)
        {
            if (PerQuestionType.TryGetValue(type, out var s)) Row(VsiBenchQuestionTypes.TaskLabel(type), s.Count, s.Score);
        }
        foreach (string type in VsiBenchQuestionTypes.Numeric) TypeRow(type);
        TypeRow(VsiBenchQuestionTypes.ObjectRelDistance);
        if (RelDirection is double dir)
        {
            int n = VsiBenchQuestionTypes.RelDirection.Sum(t => PerQuestionType.TryGetValue(t, out var s) ? s.Count : 0);
            Row(VsiBenchQuestionTypes.TaskLabel(VsiBenchQuestionTypes.RelDirectionTask), n, dir);
            foreach (string type in VsiBenchQuestionTypes.RelDirection) TypeRow(type);
        }
        TypeRow(VsiBenchQuestionTypes.RoutePlanning);
        TypeRow(VsiBenchQuestionTypes.AppearanceOrder);
        sb.AppendLine();
        sb.AppendLine($"{"",-14} {"micro",8} {"macro",8}");
        foreach (var (label, m) in new[] { ("Acc", Acc), ("MRA", Mra), ("All", All) })
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{label,-14} {m.Micro * 100,8:F2} {m.Macro * 100,8:F2}"));
        sb.Append("(macro All is the official VSI-Bench overall; micro averages over questions)");
        return sb.ToString();
    }
}
