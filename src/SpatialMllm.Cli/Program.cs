using System.CommandLine;
using SpatialMllm.Cli.Commands;

var root = new RootCommand("Spatial-MLLM (Qwen2.5-VL + VGGT) in .NET: evaluation on VSI-Bench and ScanQA.");
root.Subcommands.Add(ScoreCommand.Create());
root.Subcommands.Add(EvaluateCommand.Create());
root.Subcommands.Add(MergeCommand.Create());
return await root.Parse(args).InvokeAsync();
