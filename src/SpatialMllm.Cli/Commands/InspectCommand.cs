using System.CommandLine;
using SpatialMllm.Research.Checkpoints;

namespace SpatialMllm.Cli.Commands;

/// <summary><c>spatial-mllm inspect DIR</c>: a checkpoint's config, parameters per component and dtypes.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("DIR") { Description = "A Hugging Face model folder (config.json + safetensors)." };
        var command = new Command("inspect", "Print a checkpoint's config and its parameters per component.") { folder };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            using var checkpoint = Checkpoint.Open(parse.GetValue(folder)!);
            output.Write(CheckpointSummary.Describe(checkpoint));
            return 0;
        }));
        return command;
    }
}
