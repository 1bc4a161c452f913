using SpatialMllm.Research.Models;
using SpatialMllm.Research.Tests.Training;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Cli;

public class TrainCommandTests
{
    /// <summary>`train` in process, its exit code and what it wrote (the training safety tests use it too).</summary>
    [Fact]
    public void Dry_run_names_the_bad_row_and_fails()
    {
        string data = SftTrainerTests.Data(), dir = TestPaths.NewTempDir("train-cli-dry");
        string annotations = Path.Combine(dir, "rows.jsonl");
        File.WriteAllLines(annotations, [File.ReadAllLines(Path.Combine(data, "train.jsonl"))[0],
            """{"video": "videos/none.mp4", "conversations": [{"from": "human", "value": "<video>\nQ"}, {"from": "gpt", "value": "A"}]}"""]);
        var (code, output, error) = CliInvocation.Invoke("train", "--dry-run", "--pretrained_model_name_or_path", Path.Combine(data, "model"), "--dataset_use", annotations,
            "--data_path", data, "--output_dir", Path.Combine(dir, "out"));
        Assert.Equal(1, code);
        Assert.Contains($"{annotations}:2: ", output);
        Assert.Contains("none.mp4", output);
        Assert.EndsWith("1 of 2 annotation rows are usable", output.TrimEnd());
        Assert.Empty(error);
    }

    [Fact]
    public void Config_file_and_flags_train_and_save_a_model_that_loads()
    {
        string data = SftTrainerTests.Data(), dir = TestPaths.NewTempDir("train-cli");
        string config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, $$"""
            { "model_name_or_path": "{{Path.Combine(data, "model")}}", "dataset_use": "{{Path.Combine(data, "train.jsonl")}}",
              "output_dir": "{{Path.Combine(dir, "out")}}", "video_min_frames": 4, "video_max_frames": 4,
              "video_min_frame_pixels": 9408, "video_max_frame_pixels": 9408, "device": "cpu", "learning_rate": 1e-3 }
            """);
        var (code, output, error) = CliInvocation.Invoke("train", "--config", config, "--max_steps", "1", "--gradient_accumulation_steps", "1", "--gradient_checkpointing");
        Assert.True(code == 0, output + error);
        Assert.Matches(@"step 1/1 .* loss \d+\.\d{4} .* tok/s", output);
        using var model = SpatialMllmModel.Load(Path.Combine(dir, "out"), torch.CPU);
        Assert.Empty(model.LoadReport!.Missing);

        var (badCode, _, badError) = CliInvocation.Invoke("train", "--config", config, "--max_steps", "many");
        Assert.Equal(1, badCode);
        Assert.Contains("--max_steps many: expected an integer", badError);
    }
}
