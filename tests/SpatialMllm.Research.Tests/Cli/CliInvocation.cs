using System.CommandLine;
using SpatialMllm.Cli.Commands;

namespace SpatialMllm.Research.Tests.Cli;

/// <summary>The CLI in-process: <c>spatial-mllm ARGS</c> with its output and error captured (see <see cref="CliProcess"/>
/// for a real process).</summary>
internal static class CliInvocation
{
    public static (int Code, string Output, string Error) Invoke(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = SpatialMllmCommand.Create().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }
}
