using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Cli.Commands;

/// <summary><c>spatial-mllm score vsibench|scanqa</c>: score a predictions file.</summary>
internal static class ScoreCommand
{
    public static Command Create()
    {
        var command = new Command("score", "Score a predictions file: JSON lines {\"id\", \"prediction\"}, or the seed's results JSON.");
        command.Subcommands.Add(CreateVsiBench());
        command.Subcommands.Add(CreateScanQa());
        return command;
    }

    static Command CreateVsiBench()
    {
        var predictions = new Option<string>("--predictions") { Description = "Predictions file.", Required = true };
        var dataset = new Option<string?>("--dataset")
        {
            Description = "VSI-Bench test.jsonl or parquet (default: the one the run manifest beside --predictions names, else datasets/evaluation/vsibench/test.jsonl).",
        };
        var profile = new Option<string>("--profile")
        {
            Description = "Scoring rules: spatial-mllm (the seed's; default) or official (thinking-in-space / lmms-eval).",
            DefaultValueFactory = _ => "spatial-mllm",
        }.AcceptOnlyFromAmong("spatial-mllm", "official");
        var compare = new Option<string?>("--compare")
        {
            Description = "Also list every question whose score differs under this other profile, with what each profile read.",
        }.AcceptOnlyFromAmong("spatial-mllm", "official");
        var json = new Option<bool>("--json") { Description = "Print the metrics JSON (the seed's keys, with per-question rewards) instead of the table." };
        var subset = CliSupport.SubsetOption();
        var debiasedIds = CliSupport.DebiasedIdsOption();
        var missing = CliSupport.MissingOption();
        var command = new Command("vsibench",
            "Score VSI-Bench predictions: per type, micro and macro Acc / MRA / All; on VSI-Bench-Debiased as well when the file " +
            "has a 'pruned' column (or pruned_ids.txt beside it, or --debiased-ids).")
        {
            predictions, dataset, profile, subset, debiasedIds, missing, compare, json,
        };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            string datasetPath = CliSupport.Locate("VSI-Bench dataset",
                parse.GetValue(dataset) ?? CliSupport.DatasetOfRun(parse.GetValue(predictions)!, "vsibench"),
                ["datasets/evaluation/vsibench"], CliSupport.VsiBenchFileNames);
            var data = VsiBench.Load(datasetPath, CliSupport.ParseSubset(parse.GetValue(subset)!), parse.GetValue(debiasedIds));
            var read = PredictionFile.Read(parse.GetValue(predictions)!);
            var rules = VsiBenchScoringProfile.FromName(parse.GetValue(profile)!);
            var missingPolicy = CliSupport.ParseMissing(parse.GetValue(missing)!);
            var scores = VsiBench.Score(read, data, rules, missingPolicy);
            var debiased = VsiBench.ScoreDebiased(read, data, rules, missingPolicy);
            if (parse.GetValue(json))
            {
                var metrics = scores.ToMetricsJson();
                if (debiased != null) metrics["debiased"] = debiased.ToMetricsJson(includeRewards: false);
                output.WriteLine(metrics.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return CliSupport.Ok;
            }
            output.WriteLine($"dataset {datasetPath} ({data.Subset}, {data.Count} questions); predictions {parse.GetValue(predictions)}");
            output.WriteLine(scores.FormatTable());
            if (debiased != null)
            {
                output.WriteLine();
                output.WriteLine($"VSI-Bench-Debiased (pruned == false): {debiased.Questions.Count} of {scores.Questions.Count} scored questions");
                output.WriteLine(debiased.FormatTable());
            }
            if (parse.GetValue(compare) is string other)
            {
                var otherRules = VsiBenchScoringProfile.FromName(other);
                var otherScores = VsiBench.Score(read, data, otherRules, missingPolicy);
                output.WriteLine();
                output.WriteLine(otherScores.FormatTable());
                var changes = VsiBench.Diff(read, data, rules, otherRules, missingPolicy);
                output.WriteLine();
                output.WriteLine($"{changes.Count} question(s) score differently under {rules.Name} and {otherRules.Name}:");
                foreach (var c in changes)
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  {c.Id,6} {c.QuestionType,-28} gt {c.GroundTruth,-6} {c.ScoreA:0.###} → {c.ScoreB:0.###}   {rules.Name}: {c.ReadingA}   {otherRules.Name}: {c.ReadingB}"));
            }
            return CliSupport.Ok;
        }));
        return command;
    }

    static Command CreateScanQa()
    {
        var predictions = new Option<string>("--predictions") { Description = "Predictions file ({\"id\",\"prediction\"} lines or the seed's {\"sample_id\",\"pred_response\"} JSON).", Required = true };
        var dataset = new Option<string?>("--dataset")
        {
            Description = "ScanQA_v1.0_val.json or scanqa_val_llava_style.json (default: the one the run manifest beside --predictions names, else under datasets/evaluation/scanqa).",
        };
        var json = new Option<bool>("--json") { Description = "Print the metrics as JSON." };
        var missing = CliSupport.MissingOption();
        var meteorJar = CliSupport.MeteorJarOption();
        var command = new Command("scanqa", "Score ScanQA val predictions as the seed does: BLEU-1..4, ROUGE-L, CIDEr, EM, and METEOR when Java and meteor-1.5.jar are there.")
        {
            predictions, dataset, missing, meteorJar, json,
        };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            string datasetPath = CliSupport.Locate("ScanQA dataset",
                parse.GetValue(dataset) ?? CliSupport.DatasetOfRun(parse.GetValue(predictions)!, "scanqa"),
                ["datasets/evaluation/scanqa"], CliSupport.ScanQaFileNames);
            var scores = ScanQa.Score(parse.GetValue(predictions)!, ScanQa.Load(datasetPath), CliSupport.ParseMissing(parse.GetValue(missing)!),
                parse.GetValue(meteorJar));
            output.WriteLine(parse.GetValue(json) ? scores.ToMetricsJsonText() : scores.FormatTable());
            return CliSupport.Ok;
        }));
        return command;
    }
}
