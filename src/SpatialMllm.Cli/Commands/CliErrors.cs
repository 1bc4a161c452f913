using SpatialMllm.Research.Checkpoints;

namespace SpatialMllm.Cli.Commands;

/// <summary>Turns the errors a user can cause (bad files, bad arguments) into one line on stderr and exit code 2;
/// anything else is a bug and keeps its stack trace.</summary>
internal static class CliErrors
{
    public static int Run(Func<int> action)
    {
        try { return action(); }
        catch (Exception e) when (e is CheckpointFormatException or FileNotFoundException or DirectoryNotFoundException
                                      or ArgumentException or InvalidDataException or FormatException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
