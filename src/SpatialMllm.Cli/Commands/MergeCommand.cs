using System.CommandLine;
using SpatialMllm.Research.Evaluation;

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
            var report = ResultsMerger.Merge(parse.GetValue(inputs)!, parse.GetValue(output)!);
            if (report.ConflictingIds.Count > 0)
            {
                parse.InvocationConfiguration.Error.WriteLine(
                    $"error: {report.ConflictingIds.Count} id(s) have different answers in different files, e.g. " +
                    $"{string.Join(", ", report.ConflictingIds.Take(5))}; nothing was written.");
                return CliSupport.Failed;
            }
            writer.WriteLine($"merged {report.Inputs} file(s): {report.Records} answers" +
                             (report.IdenticalDuplicates > 0 ? $", {report.IdenticalDuplicates} identical duplicate(s) kept once" : "") +
                             $" → {parse.GetValue(output)}");
            return CliSupport.Ok;
        }));
        return command;
    }
}
