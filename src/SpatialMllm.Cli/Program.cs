using System.CommandLine;
using SpatialMllm.Cli.Commands;

var root = new RootCommand("spatial-mllm: Spatial-MLLM (Qwen2.5-VL + VGGT) in TorchSharp — run, verify, sample frames, evaluate.")
{
    DemoCommand.Create(),
    EnvCommand.Create(),
    InspectCommand.Create(),
    SampleFramesCommand.Create(),
    VerifyFixtureCommand.Create(),
    ScoreCommand.Create(),
    EvaluateCommand.Create(),
    MergeCommand.Create(),
    TrainCommand.Create(),
};
// InvokeAsync: evaluate gets a cancellation token on Ctrl+C.
return await root.Parse(args).InvokeAsync();
