using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models.Vggt;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Vggt;

/// <summary>The tiny fixture's VGGT (fp32, CPU) and its expected inputs/outputs, loaded once per test class.</summary>
public sealed class TinyVggtFixture : IDisposable
{
    public TinyVggtFixture()
    {
        Checkpoint = Checkpoint.Open(TestPaths.TinyFixture);
        Io = SafetensorsFile.Open(Path.Combine(TestPaths.TinyFixture, "io.safetensors"));
        Model = new VggtModel(Checkpoint.Config.Spatial!);
        LoadReport = Model.LoadWeights(Checkpoint);
        Model.eval();
        Frames = Io.Read("video_tchw");
    }

    internal Checkpoint Checkpoint { get; }
    internal SafetensorsFile Io { get; }
    internal LoadReport LoadReport { get; }
    public VggtModel Model { get; }

    /// <summary>video_tchw [4, 3, 84, 112] in [0, 1].</summary>
    public Tensor Frames { get; }

    public void Dispose()
    {
        Frames.Dispose();
        Model.Dispose();
        Io.Dispose();
        Checkpoint.Dispose();
    }
}
