namespace SpatialMllm.Research.Checkpoints;

/// <summary>A checkpoint file or folder that cannot be read as asked; the message names the file and, where
/// there is one, the tensor key.</summary>
public sealed class CheckpointFormatException(string message, Exception? inner = null) : Exception(message, inner);
