using System.CommandLine;
using SpatialMllm.Cli.Commands;

var root = new RootCommand("spatial-mllm: Spatial-MLLM (Qwen2.5-VL + VGGT) in TorchSharp — download, run, verify, sample frames, evaluate.")
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
};
// InvokeAsync: evaluate gets a cancellation token. ProcessTerminationTimeout = null: System.CommandLine would end the
// process 2 s after Ctrl+C/SIGTERM, cutting off the batch of answers in progress; evaluate handles both signals itself
// (ShutdownSignals) and exits 130/143 once its files are flushed, other commands end at once as usual.
return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
