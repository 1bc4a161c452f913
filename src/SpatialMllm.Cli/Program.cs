using System.CommandLine;
using SpatialMllm.Cli.Commands;

var root = new RootCommand("spatial-mllm: Spatial-MLLM (Qwen2.5-VL + VGGT) in TorchSharp — run, verify, sample frames, evaluate.")
{
    EnvCommand.Create(),
    InspectCommand.Create(),
};
return root.Parse(args).Invoke();
