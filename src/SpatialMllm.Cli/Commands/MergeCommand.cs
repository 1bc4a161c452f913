using System.CommandLine;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Runs;

namespace SpatialMllm.Cli.Commands;

/// <summary><c>spatial-mllm merge --out FILE SHARD...</c>: join results files of shards or of interrupted runs.</summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Merged results file (replaced atomically).", Required = true };
        var inputs = new Argument<string[]>("inputs") { Description = "Results files to merge.", Arity = ArgumentArity.OneOrMore };
        var command = new Command("merge", "Merge results files by id: identical duplicates are kept once, conflicting answers are an error.")
        {
            output, inputs,
        };
        command.SetAction(parse => CliSupport.Guard(parse, writer =>
        {
            using var outputLock = ResultsFileLock.Acquire(parse.GetValue(output)!, "merge");
            var manifest = CommonManifest(parse.GetValue(inputs)!, writer);
            var report = ResultsMerger.Merge(parse.GetValue(inputs)!, parse.GetValue(output)!);
            if (report.ConflictingIds.Count > 0)
            {
                parse.InvocationConfiguration.Error.WriteLine(
                    $"error: {report.ConflictingIds.Count} id(s) have different answers in different files, e.g. " +
                    $"{string.Join(", ", report.ConflictingIds.Take(5))}; nothing was written.");
                return CliSupport.Failed;
            }
            manifest?.Write(ResultsManifest.PathFor(parse.GetValue(output)!));
            writer.WriteLine($"merged {report.Inputs} file(s): {report.Records} answers" +
                             (report.IdenticalDuplicates > 0 ? $", {report.IdenticalDuplicates} identical duplicate(s) kept once" : "") +
                             $" → {parse.GetValue(output)}");
            return CliSupport.Ok;
        }));
        return command;
    }

    /// <summary>The run manifest the inputs share (shards of one cluster job), to keep beside the merged file. Inputs whose
    /// manifests disagree (another model, other frames or decoding) are refused: their answers do not belong in one file.</summary>
    static RunManifest? CommonManifest(IReadOnlyList<string> inputs, TextWriter log)
    {
        var withManifest = inputs.Where(p => File.Exists(ResultsManifest.PathFor(p))).ToList();
        if (withManifest.Count == 0) return null;
        if (withManifest.Count < inputs.Count)
            log.WriteLine($"note: {inputs.Count - withManifest.Count} of {inputs.Count} input(s) have no run manifest, so their model and settings cannot be checked.");
        var first = RunManifest.Read(ResultsManifest.PathFor(withManifest[0]));
        foreach (string other in withManifest.Skip(1))
        {
            var differences = ResultsManifest.BlockingDifferences(first, RunManifest.Read(ResultsManifest.PathFor(other)));
            if (differences.Count > 0)
                throw new RunManifestMismatchException(
                    $"{other} comes from a different run than {withManifest[0]}: " +
                    string.Join("; ", differences.Select(d => $"{d.Field} {d.Saved} vs {d.Now}")) + ". Nothing was written.");
        }
        return first;
    }
}
