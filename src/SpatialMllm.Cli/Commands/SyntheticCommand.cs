using System.CommandLine;
using System.Globalization;
using SpatialMllm.Research.Scenes;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm synthetic --out DIR --seeds 0-9</c>: rendered synthetic scenes with VSI-Bench-style questions, laid
/// out like VSI-Bench (test.jsonl, synthetic/seedNNNN.mp4) plus the same questions as fine-tuning conversations.
/// </summary>
internal static class SyntheticCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder to write (test.jsonl, synthetic/*.mp4, train-conversations.jsonl).", Required = true };
        var seeds = new Option<string>("--seeds") { Description = "Scene seeds: a range 0-9, a list 1,5,7, or both (0-4,9).", DefaultValueFactory = _ => "0-9" };
        var frames = new Option<int>("--frames") { Description = "Frames per scene video.", DefaultValueFactory = _ => 128 };
        var width = new Option<int>("--width") { Description = "Frame width (even).", DefaultValueFactory = _ => 224 };
        var height = new Option<int>("--height") { Description = "Frame height (even).", DefaultValueFactory = _ => 168 };
        var perType = new Option<int>("--per-type") { Description = "Most questions of each type per scene.", DefaultValueFactory = _ => 4 };
        var command = new Command("synthetic", "Render synthetic indoor scenes with ground truth and write VSI-Bench-style questions about them (evaluate vsibench --data takes the folder).")
        {
            output, seeds, frames, width, height, perType,
        };
        command.SetAction(parse => CliSupport.Guard(parse, writer =>
        {
            var options = new SyntheticSceneOptions(parse.GetValue(frames), parse.GetValue(width), parse.GetValue(height));
            int[] seedList = ParseSeeds(parse.GetValue(seeds)!);
            string folder = parse.GetValue(output)!;
            var questions = SyntheticBenchmark.Write(folder, seedList, options, parse.GetValue(perType));
            writer.WriteLine($"{seedList.Length} scene(s), {questions.Count} questions → {Path.GetFullPath(folder)}");
            foreach (var group in questions.GroupBy(q => q.QuestionType).OrderBy(g => g.Key, StringComparer.Ordinal))
                writer.WriteLine($"  {group.Key,-30} {group.Count(),5}");
            return CliSupport.Ok;
        }));
        return command;
    }

    /// <summary>"0-4,9" → 0, 1, 2, 3, 4, 9 (in the order given, each once).</summary>
    internal static int[] ParseSeeds(string text)
    {
        var seeds = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] ends = part.Split('-', 2);
            if (!int.TryParse(ends[0], NumberStyles.None, CultureInfo.InvariantCulture, out int first)
                || !int.TryParse(ends[^1], NumberStyles.None, CultureInfo.InvariantCulture, out int last) || last < first)
                throw new ArgumentException($"--seeds: '{part}' is not a seed or a range like 0-9");
            seeds.AddRange(Enumerable.Range(first, last - first + 1));
        }
        if (seeds.Count == 0) throw new ArgumentException("--seeds: no seeds given");
        return [.. seeds.Distinct()];
    }
}
