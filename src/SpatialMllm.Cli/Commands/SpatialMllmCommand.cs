using System.CommandLine;

namespace SpatialMllm.Cli.Commands;

/// <summary>The <c>spatial-mllm</c> root command with every subcommand (the program, and the tests in-process).</summary>
public static class SpatialMllmCommand
{
    public static RootCommand Create() =>
        new("spatial-mllm: Spatial-MLLM (Qwen2.5-VL + VGGT) in TorchSharp — download, run, verify, sample frames, evaluate, train.")
        {
            DemoCommand.Create(),
            DownloadCommand.Create(),
            EnvCommand.Create(),
            InspectCommand.Create(),
            SampleFramesCommand.Create(),
            VerifyFixtureCommand.Create(),
            ScoreCommand.Create(),
            EvaluateCommand.Create(),
            MergeCommand.Create(),
            SyntheticCommand.Create(),
            TrainCommand.Create(),
            RoomsTinyCommand.Create(),
        };
}
