using SpatialMllm.Research.Runtime;
using TorchSharp;

namespace SpatialMllm.Research.Notebooks;

/// <summary>
/// The settings every notebook's settings cell takes from the environment when set, else from the value written in the
/// cell: so one notebook runs unchanged on the CPU with the tiny checkpoint and, e.g.,
/// <c>SPATIAL_MLLM_DEVICE=cuda SPATIAL_MLLM_DTYPE=bf16 SPATIAL_MLLM_MODEL=/data/Spatial-MLLM jupyter nbconvert --execute …</c>
/// on a GPU with the real weights.
/// </summary>
public static class NotebookSettings
{
    public const string DeviceVariable = "SPATIAL_MLLM_DEVICE";
    public const string DTypeVariable = "SPATIAL_MLLM_DTYPE";
    public const string ModelVariable = "SPATIAL_MLLM_MODEL";
    public const string VideoVariable = "SPATIAL_MLLM_VIDEO";
    public const string HeldOutRoomsVariable = "SPATIAL_MLLM_HELD_OUT_ROOMS";

    /// <summary>$SPATIAL_MLLM_DEVICE, else <paramref name="value"/>: "cpu", "cuda", "cuda:1", or "auto" (CUDA when visible).</summary>
    public static torch.Device Device(string value = "auto") => TorchRuntime.ParseDevice(FromEnvironment(DeviceVariable) ?? value);

    /// <summary>$SPATIAL_MLLM_DTYPE, else <paramref name="value"/>: "fp32", "bf16" or "fp16".</summary>
    public static torch.ScalarType DType(string value = "fp32") => TorchRuntime.ParseDType(FromEnvironment(DTypeVariable) ?? value);

    /// <summary>$SPATIAL_MLLM_MODEL, else <paramref name="value"/>: a checkpoint folder.</summary>
    public static string Checkpoint(string value) => FromEnvironment(ModelVariable) ?? value;

    /// <summary>$SPATIAL_MLLM_VIDEO, else <paramref name="value"/>: a video file.</summary>
    public static string Video(string value) => FromEnvironment(VideoVariable) ?? value;

    /// <summary>$SPATIAL_MLLM_HELD_OUT_ROOMS, else <paramref name="value"/>: how many held-out rooms a notebook measures
    /// (few in CI, all of <c>RoomsTinyRecipe.HeldOutSeeds</c> for a real run).</summary>
    public static int HeldOutRooms(int value) => FromEnvironment(HeldOutRoomsVariable) is { } text
        ? int.TryParse(text, out int rooms) && rooms > 0 ? rooms : throw new ArgumentException($"${HeldOutRoomsVariable} must be a positive number of rooms, not '{text}'")
        : value;

    static string? FromEnvironment(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;
}
