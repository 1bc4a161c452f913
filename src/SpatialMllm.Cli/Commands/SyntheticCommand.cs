using System.CommandLine;
using System.Globalization;
using SpatialMllm.Research.Scenes;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm synthetic --out DIR --seeds 0-9</c>: rendered synthetic scenes with VSI-Bench-style questions, laid
/// out like VSI-Bench (test.jsonl, synthetic/seedNNNN.mp4 or, --video-format frames, synthetic/seedNNNN/*.png) plus the same questions as fine-tuning conversations. Sizes
/// are bounded before anything is rendered; a non-empty --out is refused unless --force, which first removes what an
/// earlier run wrote there (so no stale video stays beside the new questions).
/// </summary>
internal static class SyntheticCommand
{
    /// <summary>Most scenes one call renders.</summary>
    public const int MaxScenes = 100_000;

    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder to write (test.jsonl, synthetic/*.mp4, train-conversations.jsonl).", Required = true };
        var seeds = new Option<string>("--seeds") { Description = "Scene seeds: a range 0-9, a list 1,5,7, or both (0-4,9).", DefaultValueFactory = _ => "0-9" };
        var frames = new Option<int>("--frames") { Description = "Frames per scene video.", DefaultValueFactory = _ => 128 };
        var width = new Option<int>("--width") { Description = "Frame width (even).", DefaultValueFactory = _ => 224 };
        var height = new Option<int>("--height") { Description = "Frame height (even).", DefaultValueFactory = _ => 168 };
        var perType = new Option<int>("--per-type") { Description = "Most questions of each type per scene.", DefaultValueFactory = _ => 4 };
        var videoFormat = new Option<string>("--video-format")
        {
            Description = "mp4 (synthetic/seedNNNN.mp4, H.264 through ffmpeg) or frames (synthetic/seedNNNN/ folders of PNGs: the exact rendered pixels, no ffmpeg needed).",
            DefaultValueFactory = _ => "mp4",
        }.AcceptOnlyFromAmong("mp4", "frames");
        var force = new Option<bool>("--force")
        {
            Description = "Write into a non-empty --out: first removes what `synthetic` wrote there (test.jsonl, train-conversations.jsonl, synthetic/); other files are kept.",
        };
        var command = new Command("synthetic", "Render synthetic indoor scenes with ground truth and write VSI-Bench-style questions about them (evaluate vsibench --data takes the folder).")
        {
            output, seeds, frames, width, height, perType, videoFormat, force,
        };
        command.SetAction(parse => CliSupport.Guard(parse, writer =>
        {
            var options = CheckedOptions(parse.GetValue(frames), parse.GetValue(width), parse.GetValue(height));
            if (parse.GetValue(perType) < 1) throw new ArgumentException($"--per-type must be 1 or more; got {parse.GetValue(perType)}.");
            int[] seedList = ParseSeeds(parse.GetValue(seeds)!);
            string folder = parse.GetValue(output)!;
            PrepareOutFolder(folder, parse.GetValue(force), writer);
            var format = parse.GetValue(videoFormat) == "frames" ? SceneVideoFormat.Frames : SceneVideoFormat.Mp4;
            var questions = SyntheticBenchmark.Write(folder, seedList, options, parse.GetValue(perType), format);
            writer.WriteLine($"{seedList.Length} scene(s), {questions.Count} questions → {Path.GetFullPath(folder)}");
            foreach (var group in questions.GroupBy(q => q.QuestionType).OrderBy(g => g.Key, StringComparer.Ordinal))
                writer.WriteLine($"  {group.Key,-30} {group.Count(),5}");
            return CliSupport.Ok;
        }));
        return command;
    }

    /// <summary>The scene options, each bound checked here with its flag's name (before any memory is taken).</summary>
    internal static SyntheticSceneOptions CheckedOptions(int frames, int width, int height)
    {
        if (frames is < 2 or > SyntheticSceneOptions.MaxFrames)
            throw new ArgumentException($"--frames must be 2 to {SyntheticSceneOptions.MaxFrames}; got {frames}.");
        foreach (var (flag, side) in new[] { ("--width", width), ("--height", height) })
            if (side is < 16 or > SyntheticSceneOptions.MaxSide || side % 2 != 0)
                throw new ArgumentException($"{flag} must be an even number from 16 to {SyntheticSceneOptions.MaxSide}; got {side}.");
        if ((long)width * height > SyntheticSceneOptions.MaxPixels)
            throw new ArgumentException($"--width × --height must be at most {SyntheticSceneOptions.MaxPixels} pixels (1920×1080); got {width}×{height}.");
        return new SyntheticSceneOptions(frames, width, height);
    }

    /// <summary>
    /// A non-empty <paramref name="folder"/> is refused: an earlier run's videos that this one does not write would stay
    /// beside the new questions. With <paramref name="force"/>, what <c>synthetic</c> writes (the two question files and the
    /// video folder) is removed first; anything else is kept and named.
    /// </summary>
    internal static void PrepareOutFolder(string folder, bool force, TextWriter log)
    {
        if (File.Exists(folder)) throw new ArgumentException($"--out {folder} is a file; name a folder.");
        if (!Directory.Exists(folder) || !Directory.EnumerateFileSystemEntries(folder).Any()) return;
        if (!force)
            throw new ArgumentException($"--out {folder} is not empty: videos of an earlier run that this one does not write would stay beside the " +
                                        $"new questions. Pass --force to replace what `synthetic` wrote there ({SyntheticBenchmark.QuestionsFileName}, " +
                                        $"{SyntheticBenchmark.ConversationsFileName}, {SyntheticScene.DatasetName}/), or another --out.");
        foreach (string name in new[] { SyntheticBenchmark.QuestionsFileName, SyntheticBenchmark.ConversationsFileName })
            File.Delete(Path.Combine(folder, name));
        string videos = Path.Combine(folder, SyntheticScene.DatasetName);
        if (Directory.Exists(videos)) Directory.Delete(videos, recursive: true);
        var kept = Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        if (kept.Count > 0) log.WriteLine($"--force: replaced the earlier scenes in {folder}; kept the other files there: {string.Join(", ", kept)}");
    }

    /// <summary>"0-4,9" → 0, 1, 2, 3, 4, 9 (in the order given, each once); at most <see cref="MaxScenes"/>.</summary>
    internal static int[] ParseSeeds(string text)
    {
        var seeds = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] ends = part.Split('-', 2);
            if (!int.TryParse(ends[0], NumberStyles.None, CultureInfo.InvariantCulture, out int first)
                || !int.TryParse(ends[^1], NumberStyles.None, CultureInfo.InvariantCulture, out int last) || last < first)
                throw new ArgumentException($"--seeds: '{part}' is not a seed or a range like 0-9");
            if (seeds.Count + ((long)last - first + 1) > MaxScenes)
                throw new ArgumentException($"--seeds: '{text}' names more than {MaxScenes} scenes");
            seeds.AddRange(Enumerable.Range(first, last - first + 1));
        }
        if (seeds.Count == 0) throw new ArgumentException("--seeds: no seeds given");
        return [.. seeds.Distinct()];
    }
}
