using System.Globalization;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Runs;

namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// The <see cref="RunManifest"/> of a results file: the model (folder and a content fingerprint of its config and
/// weights), the frames, sampler and decoding settings, the dataset's hash and the code version. Kept in a sidecar
/// <c>{results}.run.json</c>, so results files stay plain JSON lines that <c>merge</c>, <c>score</c> and older tools read
/// unchanged. A resumed run must match it field for field (the code version only warns: fixes between runs are normal);
/// <c>--force-new</c> moves the old files aside and starts over.
/// </summary>
internal static class ResultsManifest
{
    /// <summary>Fields that are reported when they differ but do not stop a resume.</summary>
    static readonly string[] Informational = ["code_version", "dataset.file", "created"];

    public static string PathFor(string resultsPath) => Path.ChangeExtension(resultsPath, null) + ".run.json";

    /// <summary>The manifest of a run about to start.</summary>
    /// <param name="modelDir">Null for a dry run (placeholder answers, no model).</param>
    /// <param name="adapterDir">A LoRA adapter applied to the model (recorded by folder and content), or null.</param>
    public static RunManifest Describe(string benchmark, string? modelDir, AnswererOptions options, string dtype,
        bool stripAnswers, string datasetPath, string? adapterDir = null)
    {
        // Settings that cannot change an answer stay out, so that a run resumes with any of them: prefix sharing, the batch
        // size (greedy decoding of a batch gives each question's own answer) and how far videos are decoded ahead.
        var fields = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["benchmark"] = benchmark,
            ["answerer"] = modelDir == null ? "dry-run" : "model",
            ["frames"] = options.Frames.ToString(CultureInfo.InvariantCulture),
            ["sampler"] = options.Sampler == SamplerKind.SpaceAware ? "space-aware" : "uniform",
            ["max_new_tokens"] = options.MaxNewTokens.ToString(CultureInfo.InvariantCulture),
            ["resized_size"] = options.ResizedSize is { } s ? $"{s.Height}x{s.Width}" : "pixel budget",
            ["decoding"] = "greedy",
            ["dtype"] = modelDir == null ? "-" : dtype,
            ["strip_answers"] = stripAnswers ? "yes" : "no",
            ["dataset.file"] = Path.GetFullPath(datasetPath),
            ["dataset.sha256"] = RunManifest.Sha256OfFile(datasetPath),
            ["code_version"] = RunManifest.CodeVersion,
            ["created"] = RunManifest.Timestamp,
        };
        if (modelDir != null)
        {
            var (config, weights) = RunManifest.ModelFingerprint(modelDir);
            fields["model.folder"] = Path.GetFullPath(modelDir);
            fields["model.config_sha256"] = config;
            fields["model.weights_sha256"] = weights;
        }
        if (adapterDir != null)
        {
            fields["adapter.folder"] = Path.GetFullPath(adapterDir);
            fields["adapter.sha256"] = RunManifest.Sha256OfFile(Path.Combine(adapterDir, LoraConfig.ConfigFileName)) + " " +
                                       RunManifest.Sha256OfFile(Path.Combine(adapterDir, LoraConfig.WeightsFileName));
        }
        return new RunManifest(fields);
    }

    /// <summary>
    /// Makes <paramref name="resultsPath"/> ready for this run: with <paramref name="forceNew"/>, earlier files are moved
    /// aside (never deleted); otherwise answers already there must come from a run with the same manifest. Then the
    /// manifest is written. Throws <see cref="RunManifestMismatchException"/> naming every differing field.
    /// </summary>
    /// <param name="alsoMoveAside">Other files of the earlier run to keep with the backup (worker shards).</param>
    public static void Adopt(this RunManifest manifest, string resultsPath, bool forceNew, TextWriter log, IEnumerable<string>? alsoMoveAside = null)
    {
        string manifestPath = PathFor(resultsPath);
        bool hasAnswers = File.Exists(resultsPath) && new FileInfo(resultsPath).Length > 0;
        if (forceNew)
        {
            string suffix = ".bak-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
            var moved = new List<string>();
            foreach (string file in new[] { resultsPath, manifestPath, SkippedQuestions.PathFor(resultsPath) }.Concat(alsoMoveAside ?? []))
                if (File.Exists(file)) { File.Move(file, file + suffix); moved.Add(file + suffix); }
            if (moved.Count > 0) log.WriteLine($"--force-new: starting over; the earlier files are kept as {string.Join(", ", moved)}");
        }
        else if (hasAnswers)
        {
            if (!File.Exists(manifestPath))
                throw new RunManifestMismatchException(
                    $"{resultsPath} already holds answers but has no run manifest ({manifestPath}): it was written by an older " +
                    "version or another tool, so which model and settings produced it cannot be checked. Pass --force-new to " +
                    "start a new results file (the old one is kept as a backup), or --out another file.");
            var saved = RunManifest.Read(manifestPath);
            var blocking = BlockingDifferences(saved, manifest);
            if (blocking.Count > 0)
                throw new RunManifestMismatchException(
                    $"{resultsPath} holds answers from a different run, so resuming would mix them with this one's:" + Environment.NewLine +
                    RunManifest.List(blocking) + Environment.NewLine +
                    "Pass the saved settings to resume it, --force-new to start over (the old file is kept as a backup), or --out another file.");
            foreach (var d in RunManifest.Differences(saved, manifest).Where(d => d.Field == "code_version"))
                log.WriteLine($"note: {resultsPath} was started by code version {d.Saved}; resuming with {d.Now}.");
            // Keep what the saved run recorded (its creation time, its code version): the file describes the first run.
            return;
        }
        manifest.Write(manifestPath);
    }

    /// <summary>The differences that make two runs' answers incomparable (all but the code version, the dataset's path
    /// and the creation time).</summary>
    public static IReadOnlyList<(string Field, string Saved, string Now)> BlockingDifferences(RunManifest saved, RunManifest now) =>
        RunManifest.BlockingDifferences(saved, now, Informational);
}
