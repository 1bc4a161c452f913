using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Training;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>
/// Issue 23: `train` keeps evaluate's safety contract. Each test reproduces a way a run lost or faked work — two runs on
/// one folder, a resume that ignored a new model, data or settings, a run that trained nothing and saved the untouched
/// model, save_total_limit 0 deleting every checkpoint, a torn trainer state, the base model's folder overwritten, broken
/// configs ending in stack traces, log.csv rows repeated — and checks the refusal or the right result. Tiny model, 84×112
/// frames, one example a step.
/// </summary>
public class TrainingSafetyTests(ITestOutputHelper output)
{
    static string Data => SftTrainerTests.Data();
    static string Model => Path.Combine(Data, "model");
    static string Annotations => Path.Combine(Data, "train.jsonl");

    static TrainingArguments Args(string outputDir, int steps) =>
        SftTrainerTests.Args(Data, outputDir) with { MaxSteps = steps, GradientAccumulationSteps = 1, SaveSteps = 1 };

    /// <summary>`train` on the tiny data, without a step count (tests add theirs).</summary>
    static string[] Train(string outputDir) =>
    [
        "train", "--model_name_or_path", Model, "--dataset_use", Annotations, "--output_dir", outputDir, "--device", "cpu",
        "--video_min_frames", "4", "--video_max_frames", "4", "--video_min_frame_pixels", "9408", "--video_max_frame_pixels", "9408",
        "--gradient_accumulation_steps", "1", "--learning_rate", "1e-3", "--mm_projector_lr", "3e-3",
    ];

    static void NoStackTrace(string error) => Assert.DoesNotContain("   at ", error);

    static string[] LoggedSteps(string outputDir) =>
        [.. File.ReadAllLines(Path.Combine(outputDir, SftTrainer.LogFile)).Skip(1).Select(row => row.Split(',')[0])];

    [Fact]
    public async Task Two_runs_on_one_output_dir_one_trains_and_the_other_is_refused_naming_it()
    {
        string dir = TestPaths.NewTempDir("train-race");
        using var atStep1 = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var first = Task.Run(() => new SftTrainer(Args(dir, 2), line =>
        {
            output.WriteLine(line);
            if (!line.StartsWith("step 1/", StringComparison.Ordinal)) return;
            atStep1.Set();
            release.Wait(TimeSpan.FromMinutes(2));
        }).Run());
        Assert.True(atStep1.Wait(TimeSpan.FromMinutes(3)), "the first run reached step 1");

        // Another open file description conflicts just as another process's would; the lock is taken before anything else.
        var e = Assert.Throws<OutputLockedException>(() => new SftTrainer(Args(dir, 3) with { LearningRate = 5e-3 }, output.WriteLine).Run());
        release.Set();
        Assert.Contains($"pid {Environment.ProcessId}", e.Message);
        Assert.Contains("`train`", e.Message);
        Assert.Contains(dir, e.Message);
        Assert.Contains("--output_dir", e.Message);

        var summary = await first;
        Assert.Equal(2, summary.FinalStep);
        Assert.Equal(["1", "2"], LoggedSteps(dir));   // the refused run wrote nothing

        // The command says the same and exits 1 while a run holds the folder.
        using (OutputLock.Acquire(Path.Combine(dir, SftTrainer.LockFile), "train", dir, ""))
        {
            var (code, _, error) = Cli.CliInvocation.Invoke([.. Train(dir), "--max_steps", "2"]);
            Assert.Equal(1, code);
            Assert.Contains("is being written by another run", error);
            Assert.Contains($"pid {Environment.ProcessId}", error);
            NoStackTrace(error);
        }
    }

    [Fact]
    public void Resuming_a_run_of_another_model_data_or_settings_is_refused_listing_what_differs()
    {
        string dir = TestPaths.NewTempDir("train-manifest");
        new SftTrainer(Args(dir, 2), output.WriteLine).Run();
        var manifest = RunManifest.Read(Path.Combine(dir, TrainingRunManifest.FileName));
        Assert.Equal(Path.GetFullPath(Model), manifest.Fields["model.folder"]);
        Assert.Equal("0.001", manifest.Fields["learning_rate"]);
        Assert.True(File.Exists(Path.Combine(dir, "checkpoint-1", TrainingRunManifest.FileName)), "each checkpoint carries the manifest");
        string before = File.ReadAllText(Path.Combine(dir, TrainingRunManifest.FileName));

        RunManifestMismatchException Refused(TrainingArguments args) =>
            Assert.Throws<RunManifestMismatchException>(() => new SftTrainer(args, output.WriteLine).Run());

        string modelB = TestPaths.NewTempDir("train-model-b");
        TinyCheckpoint.Create(modelB, seed: 2);
        var e = Refused(Args(dir, 2) with { ModelNameOrPath = modelB });
        Assert.Contains($"model.folder: saved {Path.GetFullPath(Model)}, now {Path.GetFullPath(modelB)}", e.Message);
        Assert.Contains("model.weights_sha256", e.Message);
        Assert.Contains("--force-new", e.Message);
        Assert.Contains("--resume_from_checkpoint", e.Message);

        e = Refused(Args(dir, 2) with { LearningRate = 2e-3 });
        Assert.Contains("learning_rate: saved 0.001, now 0.002", e.Message);
        Assert.DoesNotContain("model.", e.Message);

        string otherData = Path.Combine(TestPaths.NewTempDir("train-other-data"), "train.jsonl");
        File.WriteAllLines(otherData, File.ReadAllLines(Annotations).Select(row => row.Replace("\"0\"}", "\"7\"}")));
        e = Refused(Args(dir, 2) with { DatasetUse = otherData, DataPath = Data });
        Assert.Contains("dataset.sha256", e.Message);

        e = Refused(Args(dir, 2) with { ResumeFromCheckpoint = "none" });
        Assert.Contains("resume_from_checkpoint is none", e.Message);

        // The issue's case: a folder holding a run and a model that does not exist.
        var missing = Assert.Throws<DirectoryNotFoundException>(() => new SftTrainer(Args(dir, 2) with { ModelNameOrPath = "/nonexistent/model" }).Run());
        Assert.Contains("/nonexistent/model", missing.Message);

        // An earlier run without a manifest (an older version) cannot be checked: refused too.
        string older = TestPaths.NewTempDir("train-no-manifest");
        Directory.CreateDirectory(Path.Combine(older, "checkpoint-4"));
        File.WriteAllText(Path.Combine(older, "checkpoint-4", SftTrainer.StateFile), "{\"global_step\": 4}");
        Assert.Contains("no run manifest", Refused(Args(older, 2)).Message);

        Assert.Equal(before, File.ReadAllText(Path.Combine(dir, TrainingRunManifest.FileName)));
        Assert.Equal(["1", "2"], LoggedSteps(dir));
    }

    [Fact]
    public void Resume_from_checkpoint_continues_it_with_new_settings_listing_them_and_force_new_keeps_a_backup()
    {
        string dir = TestPaths.NewTempDir("train-asked");
        new SftTrainer(Args(dir, 2), output.WriteLine).Run();

        var lines = new List<string>();
        string checkpoint = Path.Combine(dir, "checkpoint-1");
        var resumed = new SftTrainer(Args(dir, 3) with { LearningRate = 2e-3, ResumeFromCheckpoint = checkpoint }, lines.Add).Run();
        foreach (string line in lines) output.WriteLine(line);
        Assert.Equal((1, 3), (resumed.StartStep, resumed.FinalStep));
        Assert.Contains(lines, l => l.StartsWith($"note: resuming {checkpoint} as asked", StringComparison.Ordinal)
                                    && l.Contains("learning_rate: saved 0.001, now 0.002") && l.Contains("max_steps: saved 2, now 3"));
        Assert.Contains($"resumed from {checkpoint} at step 1", lines);
        Assert.Equal("0.002", RunManifest.Read(Path.Combine(dir, TrainingRunManifest.FileName)).Fields["learning_rate"]);
        Assert.Equal(["1", "2", "3"], LoggedSteps(dir));   // step 2 of the first course is dropped, not repeated

        string modelB = TestPaths.NewTempDir("train-force-model");
        TinyCheckpoint.Create(modelB, seed: 5);
        lines.Clear();
        var fresh = new SftTrainer(Args(dir, 1) with { ModelNameOrPath = modelB }, lines.Add, forceNew: true).Run();
        Assert.Equal((0, 1), (fresh.StartStep, fresh.FinalStep));
        string backup = Assert.Single(Directory.GetDirectories(dir, "earlier-run.bak-*"));
        Assert.Contains($"--force-new: starting over; the earlier run's files are kept in {backup}", lines);
        foreach (string kept in new[] { TrainingRunManifest.FileName, SftTrainer.LogFile, "checkpoint-2", "model.safetensors", "runs" })
            Assert.True(Path.Exists(Path.Combine(backup, kept)), kept);
        Assert.Equal("0.002", RunManifest.Read(Path.Combine(backup, TrainingRunManifest.FileName)).Fields["learning_rate"]);
        Assert.Equal(Path.GetFullPath(modelB), RunManifest.Read(Path.Combine(dir, TrainingRunManifest.FileName)).Fields["model.folder"]);
        Assert.Equal(["1"], LoggedSteps(dir));
    }

    [Fact]
    public void A_run_in_which_no_video_can_be_read_fails_listing_the_rows_and_leaves_nothing()
    {
        string dir = TestPaths.NewTempDir("train-no-videos"), outputDir = Path.Combine(dir, "out");
        string annotations = Path.Combine(dir, "missing.jsonl");
        File.WriteAllLines(annotations, File.ReadAllLines(Annotations).Take(3).Select((row, i) => row.Replace("videos/room.mp4", $"videos/missing{i}.mp4")));

        var e = Assert.Throws<NothingToTrainException>(() =>
            new SftTrainer(Args(outputDir, 50) with { DatasetUse = annotations, DataPath = Data }, output.WriteLine).Run());
        output.WriteLine(e.Message);
        Assert.Contains("No example could be trained", e.Message);
        Assert.Contains("of 3 step(s)", e.Message);   // an epoch's worth, not all 50
        for (int line = 1; line <= 3; line++)
            Assert.Contains($"{annotations}:{line}: ", e.Message);
        Assert.Contains("missing2.mp4", e.Message);
        Assert.Equal(3, e.SkippedRows.Count);
        // No untouched model saved as trained, no checkpoint of it, no manifest that would refuse the corrected rerun.
        Assert.Equal([SftTrainer.LockFile], Directory.GetFileSystemEntries(outputDir).Select(Path.GetFileName));
    }

    [Fact]
    public void A_step_whose_examples_were_all_skipped_updates_nothing_and_is_logged_without_a_loss()
    {
        string dir = TestPaths.NewTempDir("train-skipped-step"), outputDir = Path.Combine(dir, "out");
        string annotations = Path.Combine(dir, "half.jsonl");
        var good = File.ReadAllLines(Annotations);
        File.WriteAllLines(annotations, [good[0], good[1].Replace("videos/room.mp4", "videos/missing.mp4")]);

        var summary = new SftTrainer(Args(outputDir, 2) with { DatasetUse = annotations, DataPath = Data, SaveSteps = 0 }, output.WriteLine).Run();
        var empty = Assert.Single(summary.Steps, s => s.Examples == 0);
        Assert.Null(empty.Loss);
        Assert.Null(empty.GradNorm);
        Assert.Equal(1, empty.SkippedRows);
        var trained = Assert.Single(summary.Steps, s => s.Examples == 1);
        Assert.True(trained.Loss > 0);
        Assert.Equal(2, Assert.Single(summary.SkippedRows).Line);

        var rows = File.ReadAllLines(Path.Combine(outputDir, SftTrainer.LogFile));
        Assert.Equal("step,epoch,loss,learning_rate,mm_projector_lr,grad_norm,tokens_per_second,seconds,skipped_rows", rows[0]);
        var emptyRow = rows[empty.Step].Split(',');
        Assert.Equal(("", "", "1"), (emptyRow[2], emptyRow[5], emptyRow[8]));   // loss, grad_norm, skipped_rows
        Assert.NotEqual("", rows[trained.Step].Split(',')[2]);
    }

    [Theory]
    [InlineData("--num_train_epochs", "0", "num_train_epochs must be a positive number")]
    [InlineData("--num_train_epochs=-1", null, "num_train_epochs must be a positive number")]
    [InlineData("--video_max_frames", "0", "video_max_frames must be 1 to 1024; got 0")]
    [InlineData("--learning_rate=-1e-5", null, "learning_rate must be a positive number; got -1E-05")]
    [InlineData("--learning_rate", "0", "learning_rate must be a positive number; got 0")]
    [InlineData("--gradient_accumulation_steps", "0", "gradient_accumulation_steps must be at least 1; got 0")]
    [InlineData("--warmup_ratio", "1.5", "warmup_ratio must be in [0, 1]; got 1.5")]
    [InlineData("--max_grad_norm=-1", null, "max_grad_norm must be 0 (no clipping) or more; got -1")]
    [InlineData("--save_steps", "2.5", "save_steps must be 0 (only the end), a fraction of the run below 1, or a whole number of steps; got 2.5")]
    [InlineData("--max_steps", "99999999999", "--max_steps 99999999999: expected an integer from")]
    [InlineData("--num_train_epochs", "1e400", "--num_train_epochs 1e400: expected a finite number")]
    [InlineData("--bf16", "maybe", "--bf16 maybe: expected a boolean")]
    [InlineData("--dataset_use", "train.jsonl%0", "the sampling percentage after % must be 1 to 100")]
    public void Bad_arguments_are_refused_up_front_naming_the_argument(string flag, string? value, string message)
    {
        string outputDir = Path.Combine(TestPaths.NewTempDir("train-bad-argument"), "out");
        // The flag in place of the base command's own (an option given twice is a parse error of its own).
        var args = Train(outputDir).ToList();
        int given = args.IndexOf(flag.Split('=')[0]);
        if (given >= 0) args.RemoveRange(given, 2);
        args.AddRange(value is null ? [flag] : [flag, flag == "--dataset_use" ? Path.Combine(Data, value) : value]);
        var (code, _, error) = Cli.CliInvocation.Invoke([.. args]);
        Assert.Equal(1, code);
        Assert.Contains(message, error);
        NoStackTrace(error);
        Assert.False(Directory.Exists(outputDir), "refused before anything was written");
    }

    [Fact]
    public void A_too_small_model_max_length_fails_listing_every_row_and_saves_no_model()
    {
        string outputDir = Path.Combine(TestPaths.NewTempDir("train-short"), "out");
        var (code, stdout, error) = Cli.CliInvocation.Invoke([.. Train(outputDir), "--max_steps", "100", "--model_max_length", "16"]);
        output.WriteLine(stdout + error);
        Assert.Equal(1, code);
        Assert.Contains("No example could be trained", error);
        for (int line = 1; line <= 6; line++) Assert.Contains($"{Annotations}:{line}: ", error);
        Assert.Contains("exceed model_max_length 16", error);
        NoStackTrace(error);
        Assert.False(File.Exists(Path.Combine(outputDir, "model.safetensors")));
    }

    [Fact]
    public void Save_total_limit_zero_keeps_every_checkpoint_as_in_transformers()
    {
        string all = TestPaths.NewTempDir("train-limit-0"), one = TestPaths.NewTempDir("train-limit-1");
        new SftTrainer(Args(all, 3) with { SaveTotalLimit = 0 }, output.WriteLine).Run();
        Assert.Equal([1, 2], SftTrainer.CompleteCheckpoints(all).Select(c => c.Step));
        new SftTrainer(Args(one, 3) with { SaveTotalLimit = 1 }, output.WriteLine).Run();
        Assert.Equal([2], SftTrainer.CompleteCheckpoints(one).Select(c => c.Step));
    }

    [Fact]
    public void Checkpoints_are_whole_a_partial_save_is_never_resumed_and_a_torn_trainer_state_is_named()
    {
        string dir = TestPaths.NewTempDir("train-atomic");
        new SftTrainer(Args(dir, 3), output.WriteLine).Run();
        Assert.Empty(Directory.GetFileSystemEntries(dir, "*.partial", SearchOption.AllDirectories));
        foreach (var (_, folder) in SftTrainer.CompleteCheckpoints(dir))
            foreach (string file in new[] { "model.safetensors", "config.json", SftTrainer.OptimizerFile, TrainingRunManifest.FileName, SftTrainer.StateFile })
                Assert.True(File.Exists(Path.Combine(folder, file)), Path.Combine(folder, file));

        // What a kill during the save of step 9 would leave: never taken for a checkpoint.
        Directory.CreateDirectory(Path.Combine(dir, "checkpoint-9.partial"));
        File.WriteAllText(Path.Combine(dir, "checkpoint-9.partial", SftTrainer.StateFile), "{\"global_step\": 9}");
        // A trainer state torn by something else (a full disk, an editor): the error names it, no stack trace.
        string torn = Path.Combine(dir, "checkpoint-2", SftTrainer.StateFile);
        File.WriteAllText(torn, "{\"global_step\": 2, \"max_st");
        var e = Assert.Throws<InvalidDataException>(() => new SftTrainer(Args(dir, 3), output.WriteLine).Run());
        Assert.Contains(torn, e.Message);
        Assert.Contains("damaged", e.Message);
        Assert.Contains("--resume_from_checkpoint", e.Message);
        var (code, _, error) = Cli.CliInvocation.Invoke([.. Train(dir), "--max_steps", "3", "--save_steps", "1"]);
        Assert.Equal(1, code);
        Assert.Contains($"error: {torn}", error);
        NoStackTrace(error);

        var lines = new List<string>();
        new SftTrainer(Args(dir, 3) with { ResumeFromCheckpoint = Path.Combine(dir, "checkpoint-1") }, lines.Add).Run();
        Assert.Contains($"resumed from {Path.Combine(dir, "checkpoint-1")} at step 1", lines);
        Assert.Contains("\"global_step\":2", File.ReadAllText(torn));   // saved again, whole
        Assert.Equal([1, 2], SftTrainer.CompleteCheckpoints(dir).Select(c => c.Step));
    }

    [Fact]
    public void Training_into_the_base_models_folder_is_refused()
    {
        string model = TestPaths.NewTempDir("train-own-model");
        TinyCheckpoint.Create(model);
        string link = Path.Combine(TestPaths.NewTempDir("train-link"), "model");
        Directory.CreateSymbolicLink(link, model);
        var files = Directory.GetFileSystemEntries(model).Order(StringComparer.Ordinal).ToList();
        string Refusal(TrainingArguments args) => Assert.Throws<ArgumentException>(() => new SftTrainer(args)).Message;

        var args = Args(Path.Combine(model, "out"), 1) with { ModelNameOrPath = model };
        Assert.Contains("is the base model's folder", Refusal(args with { OutputDir = model }));
        Assert.Contains("is inside the base model's folder", Refusal(args));
        Assert.Contains("is the base model's folder", Refusal(args with { OutputDir = link }));
        Assert.Contains("lies inside output_dir", Refusal(args with { OutputDir = Path.GetDirectoryName(model)! }));
        Assert.Contains("is the checkpoint resumed from", Refusal(Args(Path.Combine(Data, "out"), 1) with { OutputDir = model, ModelNameOrPath = Model, ResumeFromCheckpoint = model }));
        Assert.Equal(files, Directory.GetFileSystemEntries(model).Order(StringComparer.Ordinal));   // nothing written there
    }

    [Fact]
    public void A_mistyped_config_names_every_bad_key_with_its_line()
    {
        string dir = TestPaths.NewTempDir("train-config");
        string config = Path.Combine(dir, "run.json");
        File.WriteAllText(config, """
            {
              "model_name_or_path": "model",
              "learning_rat": 1e-3,
              "max_steps": "2",
              "num_train_epochs": 1e400,
              "video_max_frames": 3000000000,
              "bf16": "yes",
              "max_steps": 3
            }
            """);
        var (code, _, error) = Cli.CliInvocation.Invoke("train", "--config", config);
        Assert.Equal(1, code);
        Assert.Contains($"{config}:3: unknown argument \"learning_rat\"", error);
        Assert.Contains($"{config}:4: max_steps must be a number, not the string \"2\"", error);
        Assert.Contains($"{config}:5: num_train_epochs 1e400 is not a finite number", error);
        Assert.Contains($"{config}:6: video_max_frames must be a whole number from -2147483648 to 2147483647, not 3000000000", error);
        Assert.Contains($"{config}:7: bf16 must be true or false, not the string \"yes\"", error);
        Assert.Contains($"{config}:8: \"max_steps\" is given twice", error);
        Assert.Contains("Known arguments: adam_beta1,", error);
        NoStackTrace(error);

        File.WriteAllText(config, "{\n  \"max_steps\" 2\n}\n");
        (code, _, error) = Cli.CliInvocation.Invoke("train", "--config", config);
        Assert.Equal(1, code);
        Assert.Contains($"{config}:2: not valid JSON", error);
        NoStackTrace(error);
    }

    [Fact]
    public void A_broken_json_list_annotation_file_is_named_with_its_line()
    {
        string dir = TestPaths.NewTempDir("train-json-list");
        string list = Path.Combine(dir, "rows.json");
        File.WriteAllText(list, "[\n  {\"video\": \"videos/room.mp4\", \"conversations\": []},\n  {\"video\": \n]\n");
        string[] args = [.. Train(Path.Combine(dir, "out")).Select(a => a == Annotations ? list : a), "--data_path", Data, "--max_steps", "1"];
        foreach (string[] command in new[] { args, [.. args, "--dry-run"] })
        {
            var (code, _, error) = Cli.CliInvocation.Invoke(command);
            Assert.Equal(1, code);
            Assert.Contains($"{list}:4: not valid JSON", error);
            NoStackTrace(error);
        }
    }

    [Fact]
    public void Dry_run_of_an_empty_dataset_fails()
    {
        string dir = TestPaths.NewTempDir("train-empty");
        string empty = Path.Combine(dir, "empty.jsonl");
        File.WriteAllText(empty, "");
        var (code, stdout, error) = Cli.CliInvocation.Invoke([.. Train(Path.Combine(dir, "out")).Select(a => a == Annotations ? empty : a), "--dry-run"]);
        Assert.Equal(1, code);
        Assert.Contains("0 of 0 annotation rows are usable", stdout);
        Assert.Contains($"error: no annotation row in {empty} can be trained on", error);

        (code, _, error) = Cli.CliInvocation.Invoke([.. Train(Path.Combine(dir, "out")).Select(a => a == Annotations ? empty : a), "--max_steps", "1"]);
        Assert.Equal(1, code);
        Assert.Contains($"No usable annotation row in {empty}", error);
    }
}
