using SpatialMllm.Research.Models;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models;

/// <summary>One tiny checkpoint on disk and the fixture's frames, shared by a test class (an <c>IClassFixture</c>); every
/// case loads its own models from the folder.</summary>
public sealed class TinyCheckpointOnDisk : IDisposable
{
    public TinyCheckpointOnDisk()
    {
        Folder = TestPaths.NewTempDir("tiny-checkpoint");
        TinyCheckpoint.Create(Folder);
        Frames = TinyFixture.Read("frames_uint8_tchw");
    }

    public string Folder { get; }
    public Tensor Frames { get; }
    public void Dispose() => Frames.Dispose();
}

/// <summary>A test class over <see cref="TinyCheckpointOnDisk"/> whose cases create models and tensors: <see cref="Own{T}"/>
/// disposes each after the case, last first.</summary>
public abstract class TinyCheckpointTestBase(TinyCheckpointOnDisk checkpoint) : IClassFixture<TinyCheckpointOnDisk>, IDisposable
{
    readonly List<IDisposable> _owned = [];

    protected TinyCheckpointOnDisk Checkpoint { get; } = checkpoint;

    public void Dispose()
    {
        foreach (var d in Enumerable.Reverse(_owned)) d.Dispose();
        GC.SuppressFinalize(this);
    }

    protected T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }
}
