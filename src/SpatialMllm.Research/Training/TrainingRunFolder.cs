using System.Globalization;
using System.Text.Json;
using SpatialMllm.Research.Runs;

namespace SpatialMllm.Research.Training;

/// <summary>Where a training run starts, and the manifest its checkpoints carry.</summary>
/// <param name="StartedEmpty">output_dir held no earlier run when this one started (or it was moved aside).</param>
internal sealed record OutputPlan(string? Resume, RunManifest Manifest, bool StartedEmpty);

/// <summary>
/// A training run's output folder and its safety contract, the same for every trainer (SFT, GRPO): one writer
/// (<c>train.lock</c>, naming the holder); <c>run.json</c> compared with an earlier run's, whose resume is refused with
/// the differences listed unless asked for (a checkpoint named in resume_from_checkpoint, or <c>--force-new</c>, which
/// moves the earlier run aside); <c>checkpoint-N</c> folders written as <c>.partial</c> and renamed when whole; a run that
/// learned nothing leaves the folder as it found it. The trainer says what a checkpoint holds.
/// </summary>
internal sealed class TrainingRunFolder(TrainingArguments args, Action<string> log, DataParallel parallel, bool forceNew)
{
    public const string StateFile = "trainer_state.json", LockFile = "train.lock";

    /// <summary>The output folder's lock on the main rank (null on the others): throws <see cref="OutputLockedException"/>
    /// naming the run that holds it.</summary>
    public OutputLock? Lock()
    {
        Directory.CreateDirectory(args.OutputDir);
        return parallel.IsMain
            ? OutputLock.Acquire(Path.Combine(args.OutputDir, LockFile), "train", args.OutputDir,
                "Two runs in one output folder would overwrite each other's checkpoints and model and interleave log.csv: " +
                "wait for that run to finish, stop it, or pass another --output_dir.")
            : null;
    }

    /// <summary>After a failure of a run that started in an empty folder and learned nothing: removes everything of the run
    /// from output_dir, so a corrected rerun is not refused as another run's resume.</summary>
    public void ForgetRun()
    {
        foreach (string entry in TrainingRunManifest.EarlierRunEntries(args.OutputDir))
            if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
            else File.Delete(entry);
    }

    /// <summary>Writes <c>checkpoint-N</c> as <c>checkpoint-N.partial</c> and renames it when complete: a kill mid-save
    /// leaves the partial folder, which no resume reads, never a checkpoint missing a file. <paramref name="writeContents"/>
    /// writes the weights and optimizer state into the folder it is given; the manifest and <c>trainer_state.json</c>
    /// (the step and <paramref name="state"/>) are added here.</summary>
    public void SaveCheckpoint(int step, int totalSteps, RunManifest manifest, Action<string> writeContents, object state)
    {
        string folder = Path.Combine(args.OutputDir, $"checkpoint-{step}"), partial = folder + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        Directory.CreateDirectory(partial);
        writeContents(partial);
        manifest.Write(Path.Combine(partial, TrainingRunManifest.FileName));
        File.WriteAllText(Path.Combine(partial, StateFile), JsonSerializer.Serialize(new { global_step = step, max_steps = totalSteps, args = state }));
        if (Directory.Exists(folder))
        {
            // A checkpoint of the same step from before a resume of an earlier one: replaced, never half-replaced.
            string replaced = folder + ".replaced";
            if (Directory.Exists(replaced)) Directory.Delete(replaced, recursive: true);
            Directory.Move(folder, replaced);
            Directory.Move(partial, folder);
            Directory.Delete(replaced, recursive: true);
        }
        else Directory.Move(partial, folder);
        log($"saved {folder}");
        // transformers' save_total_limit: unset or ≤ 0 keeps every checkpoint.
        if (args.SaveTotalLimit is int keep && keep > 0)
            foreach (var old in CompleteCheckpoints(args.OutputDir).SkipLast(keep)) Directory.Delete(old.Folder, recursive: true);
    }

    /// <summary>
    /// Decides, on the main rank (the only one that reads and changes output_dir), where the run starts: the checkpoint
    /// asked for; with --force-new, over (the earlier run moved aside); else the newest checkpoint of an earlier run with
    /// the same manifest, refusing one that differs. The other ranks take the main rank's answer.
    /// </summary>
    public OutputPlan Plan(RunManifest manifest)
    {
        if (parallel.WorldSize == 1) return PlanOnMain(manifest);
        var plan = parallel.IsMain ? PlanOnMain(manifest) : null;
        int resumeStep = (int)Math.Round(parallel.FromMain(plan?.Resume is string r ? ReadGlobalStep(r) : -1));
        string? asked = args.ResumeFromCheckpoint is "auto" or "none" ? null : args.ResumeFromCheckpoint;
        return plan ?? new OutputPlan(resumeStep < 0 ? null : asked ?? Path.Combine(args.OutputDir, $"checkpoint-{resumeStep}"), manifest, false);
    }

    OutputPlan PlanOnMain(RunManifest manifest)
    {
        var a = args;
        string manifestPath = Path.Combine(a.OutputDir, TrainingRunManifest.FileName);
        string? asked = a.ResumeFromCheckpoint is "auto" or "none" ? null : a.ResumeFromCheckpoint;
        if (asked != null && !File.Exists(Path.Combine(asked, StateFile)))
            throw new DirectoryNotFoundException($"resume_from_checkpoint {asked}: no {StateFile} there, so it is not a complete checkpoint folder.");
        bool askedInOutput = asked != null && TrainingArguments.IsSameOrInside(TrainingArguments.FullFolder(asked), TrainingArguments.FullFolder(a.OutputDir));
        if (forceNew)
        {
            if (askedInOutput)
                throw new ArgumentException($"--force-new would move {a.OutputDir}'s earlier run aside, and with it the checkpoint to resume ({asked}): " +
                                            "resume it into another --output_dir, or drop --force-new.");
            if (TrainingRunManifest.MoveAside(a.OutputDir) is string backup)
                log($"--force-new: starting over; the earlier run's files are kept in {backup}");
            manifest.Write(manifestPath);
            return new OutputPlan(asked, manifest, StartedEmpty: true);
        }
        var earlier = TrainingRunManifest.EarlierRunEntries(a.OutputDir);
        if (asked != null)
        {
            NoteChangedSettings(asked, manifest);
            // A checkpoint of this folder's run continues it with the new settings; one from elsewhere must not mix with another run here.
            if (earlier.Count > 0 && !askedInOutput) RequireSameRun(manifest, earlier);
            manifest.Write(manifestPath);
            return new OutputPlan(asked, manifest, StartedEmpty: earlier.Count == 0);
        }
        if (earlier.Count == 0)
        {
            manifest.Write(manifestPath);
            return new OutputPlan(null, manifest, StartedEmpty: true);
        }
        if (a.ResumeFromCheckpoint == "none")
            throw new RunManifestMismatchException(
                $"{a.OutputDir} holds an earlier run ({Sample(earlier)}) and resume_from_checkpoint is none: starting over there would overwrite it. " +
                $"Pass --force-new to start over keeping its files in {BackupHint}, or another --output_dir.");
        var saved = RequireSameRun(manifest, earlier);
        return new OutputPlan(CompleteCheckpoints(a.OutputDir).LastOrDefault().Folder, saved, StartedEmpty: false);
    }

    string BackupHint => Path.Combine(args.OutputDir, "earlier-run.bak-TIME");

    static string Sample(IReadOnlyList<string> entries) =>
        string.Join(", ", entries.Take(4).Select(Path.GetFileName)) + (entries.Count > 4 ? ", …" : "");

    /// <summary>The saved manifest when output_dir's earlier run is this one (same model, data and settings); throws
    /// listing the differences otherwise.</summary>
    RunManifest RequireSameRun(RunManifest manifest, IReadOnlyList<string> earlier)
    {
        string dir = args.OutputDir, manifestPath = Path.Combine(dir, TrainingRunManifest.FileName);
        string options = $"--force-new to start over (the earlier files are kept in {BackupHint}), or another --output_dir.";
        if (!File.Exists(manifestPath))
            throw new RunManifestMismatchException(
                $"{dir} holds files of an earlier training run ({Sample(earlier)}) but no run manifest ({TrainingRunManifest.FileName}): it was " +
                "written by an older version or another tool, so which model, data and settings it trained cannot be checked. Pass " +
                $"--resume_from_checkpoint with one of its checkpoints to continue it as it is, {options}");
        var saved = RunManifest.Read(manifestPath);
        var blocking = TrainingRunManifest.BlockingDifferences(saved, manifest);
        if (blocking.Count > 0)
            throw new RunManifestMismatchException(
                $"{dir} holds a run of another model, data or settings, so resuming it would not train what was asked:" + Environment.NewLine +
                RunManifest.List(blocking) + Environment.NewLine +
                $"Pass the saved settings to resume it, --resume_from_checkpoint with one of its checkpoints to continue it with these settings, {options}");
        foreach (var d in RunManifest.Differences(saved, manifest).Where(d => d.Field is "code_version" or "data_path" or "dataset.files"))
            log($"note: {dir} was started with {d.Field} {d.Saved}; resuming with {d.Now}.");
        return saved;
    }

    /// <summary>Lists what differs from the run that saved the checkpoint asked for (resumed all the same, as asked).</summary>
    void NoteChangedSettings(string checkpoint, RunManifest manifest)
    {
        string path = Path.Combine(checkpoint, TrainingRunManifest.FileName);
        if (!File.Exists(path))
        {
            log($"note: {checkpoint} has no run manifest, so what differs from the run that saved it cannot be listed.");
            return;
        }
        var differences = TrainingRunManifest.BlockingDifferences(RunManifest.Read(path), manifest);
        if (differences.Count > 0)
            log($"note: resuming {checkpoint} as asked, with settings that differ from the run that saved it:{Environment.NewLine}{RunManifest.List(differences)}");
    }

    /// <summary>checkpoint-N folders with their trainer state, oldest first.</summary>
    public static IEnumerable<(int Step, string Folder)> CompleteCheckpoints(string outputDir) =>
        !Directory.Exists(outputDir) ? [] :
        Directory.GetDirectories(outputDir, "checkpoint-*")
            .Select(d => (Ok: int.TryParse(Path.GetFileName(d)["checkpoint-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int n), Step: n, Folder: d))
            .Where(c => c.Ok && File.Exists(Path.Combine(c.Folder, StateFile)))
            .OrderBy(c => c.Step).Select(c => (c.Step, c.Folder));

    /// <summary>The checkpoint's step; a damaged trainer state is an error naming the file and what to do.</summary>
    public static int ReadGlobalStep(string folder)
    {
        string path = Path.Combine(folder, StateFile);
        string advice = "Resume another checkpoint (--resume_from_checkpoint FOLDER) or move this one away.";
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("global_step", out var s)
                && s.ValueKind == JsonValueKind.Number && s.TryGetInt32(out int step) && step >= 0)
                return step;
            throw new InvalidDataException($"{path}: not a trainer state (no \"global_step\" step count). {advice}");
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: the trainer state is damaged ({e.Message}). {advice}"); }
    }
}
