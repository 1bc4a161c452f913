using System.CommandLine;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Runs;

namespace SpatialMllm.Cli.Commands;

/// <summary>What the evaluation commands share: exit codes, error reporting, default file locations.</summary>
internal static class CliSupport
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Interrupted = 130;

    /// <summary>Runs a command body; known data problems become a message on stderr and exit code 1, not a stack trace.</summary>
    public static int Guard(ParseResult parse, Func<TextWriter, int> body)
    {
        var output = parse.InvocationConfiguration.Output;
        var error = parse.InvocationConfiguration.Error;
        try { return body(output); }
        catch (Exception e) when (e is DataFileException or PredictionMismatchException or CheckpointFormatException
                                    or IOException or InvalidDataException or InvalidOperationException or FormatException
                                    or ArgumentException or NotSupportedException)
        {
            error.WriteLine("error: " + e.Message);
            return Failed;
        }
    }

    public static Option<string> MissingOption() => new Option<string>("--missing")
    {
        Description = "Questions without a prediction: error (default), wrong (score them as wrong answers) or skip (score only the answered ones).",
        DefaultValueFactory = _ => "error",
    }.AcceptOnlyFromAmong("error", "wrong", "skip");

    public static MissingPredictions ParseMissing(string value) => value switch
    {
        "wrong" => MissingPredictions.CountAsWrong,
        "skip" => MissingPredictions.Skip,
        _ => MissingPredictions.Error,
    };

    public static Option<string> SubsetOption() => new Option<string>("--subset")
    {
        Description = "full (default), debiased (pruned == false) or pruned; needs a 'pruned' column or pruned_ids.txt beside the file.",
        DefaultValueFactory = _ => "full",
    }.AcceptOnlyFromAmong("full", "debiased", "pruned");

    public static Option<string?> MeteorJarOption() => new Option<string?>("--meteor-jar")
    {
        Description = $"The official meteor-1.5.jar (run with `java` from PATH, as the seed does; default: ${Meteor.JarVariable}). " +
                      "Without it, or without Java, the table says METEOR was not computed and why.",
    };

    public static Option<string?> DebiasedIdsOption() => new Option<string?>("--debiased-ids")
    {
        Description = "File of the ids in VSI-Bench-Debiased (one a line): overrides the 'pruned' column; the other questions count as pruned.",
    };

    public static VsiBenchSubset ParseSubset(string value) => Enum.Parse<VsiBenchSubset>(value, ignoreCase: true);

    /// <summary>The first file that exists among <paramref name="names"/> in each of <paramref name="folders"/>, searched in
    /// that order; also tried under every parent of the current directory, so the commands work from anywhere in a clone.</summary>
    public static string Locate(string what, string? explicitPath, IReadOnlyList<string> folders, IReadOnlyList<string> names)
    {
        if (explicitPath != null) return explicitPath;
        var tried = new List<string>();
        foreach (string folder in folders)
            for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir != null; dir = Path.IsPathRooted(folder) ? null : dir.Parent)
                foreach (string name in names)
                {
                    string candidate = Path.Combine(dir.FullName, folder, name);
                    if (File.Exists(candidate)) return candidate;
                    tried.Add(candidate);
                }
        throw new FileNotFoundException($"No {what} given and none found (looked for {string.Join(", ", names)} under {string.Join(", ", folders)} " +
                                        "and the parents of the current directory); pass it explicitly.");
    }

    /// <summary>The dataset a results file was answered on, as its run manifest (<c>{results}.run.json</c>, which
    /// <c>evaluate</c> writes beside it) names it; null without a manifest. A manifest of another benchmark, or naming a
    /// dataset that is gone, is an error that says what to pass.</summary>
    public static string? DatasetOfRun(string resultsPath, string benchmark)
    {
        string manifestPath = ResultsManifest.PathFor(resultsPath);
        if (!File.Exists(manifestPath)) return null;
        var fields = RunManifest.Read(manifestPath).Fields;
        if (fields.GetValueOrDefault("benchmark") is { } other && other != benchmark)
            throw new ArgumentException($"{resultsPath} holds answers to {other} (says {manifestPath}); score it with `spatial-mllm score {other}`.");
        if (fields.GetValueOrDefault("dataset.file") is not { } dataset) return null;
        return File.Exists(dataset) ? dataset
            : throw new FileNotFoundException($"{manifestPath} names the dataset {dataset} the answers belong to, which is not there; pass --dataset.", dataset);
    }

    public static readonly string[] VsiBenchFileNames = ["test.jsonl", "test-00000-of-00001.parquet"];

    public static readonly string[] ScanQaFileNames = ["scanqa_val_llava_style.json", "ScanQA_v1.0_val.json"];
}
