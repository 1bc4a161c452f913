namespace SpatialMllm.Research.Evaluation;

/// <summary>A data or predictions file that cannot be used as it is; the message names the file and the row or line.</summary>
public sealed class DataFileException(string message) : Exception(message)
{
    public static DataFileException At(string path, string where, string problem) => new($"{path}, {where}: {problem}");
}
