using SpatialMllm.Research.Checkpoints;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests;

/// <summary>Inputs and expected outputs of the reference fixture (io.safetensors).</summary>
internal static class FixtureIo
{
    public static string Path => System.IO.Path.Combine(TestPaths.TinyFixture, "io.safetensors");

    public static Tensor Read(string name)
    {
        using var file = SafetensorsFile.Open(Path);
        return file.Read(name);
    }
}
