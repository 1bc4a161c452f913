using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests;

/// <summary>
/// The reference fixture (<c>../shared/fixtures/spatial-mllm-tiny</c>): a tiny checkpoint and <c>io.safetensors</c>, the
/// reference Python's inputs and expected outputs. <see cref="Verification.FixtureVerifier"/> checks every expected
/// tensor (FixtureParityTests, a row each); the component tests build on the parts loaded here, once for the
/// <see cref="TinyFixtureCollection"/>, and compare with <see cref="TensorComparison"/>.
/// </summary>
public sealed class TinyFixture : IDisposable
{
    /// <summary>Loads every component once, outside any test's dispose scope (which would free their buffers).</summary>
    public TinyFixture()
    {
        Vision = new Qwen2VisionTransformer(Checkpoint.Config.Vision);
        VisionReport = StateDictLoader.Load(Vision, Checkpoint, "visual.");
        Lm = new Qwen2CausalLm(Checkpoint.Config.Text);
        LmReport = Lm.LoadFrom(Checkpoint);
        Vggt = new VggtModel(Checkpoint.Config.Spatial!);
        VggtReport = Vggt.LoadWeights(Checkpoint);
        foreach (var module in new TorchSharp.torch.nn.Module[] { Vision, Lm, Vggt }) module.eval();
        Frames = Read("video_tchw");
    }

    /// <summary>One tensor of io.safetensors (the file is opened for each read, so any test thread may call it).</summary>
    public static Tensor Read(string name)
    {
        using var file = SafetensorsFile.Open(IoPath);
        return file.Read(name);
    }

    public static string IoPath => Path.Combine(TestPaths.TinyFixture, "io.safetensors");

    /// <summary>The fixture's first SFT batch (train.safetensors' step 0) on its video.</summary>
    public static SftExample FirstTrainingExample()
    {
        using var train = SafetensorsFile.Open(Path.Combine(TestPaths.TinyFixture, "train.safetensors"));
        using var io = SafetensorsFile.Open(IoPath);
        var grid = io.Read("video_grid_thw").data<long>().ToArray();
        return new SftExample(train.Read("step0_input_ids").data<long>().ToArray(), train.Read("step0_labels").data<long>().ToArray(),
            io.Read("pixel_values_videos", ScalarType.Float32).DetachFromDisposeScope(), new GridThw((int)grid[0], (int)grid[1], (int)grid[2]),
            io.Read("second_per_grid_ts").to(ScalarType.Float64).item<double>(), io.Read("video_tchw", ScalarType.Float32).DetachFromDisposeScope());
    }

    internal Checkpoint Checkpoint { get; } = Checkpoint.Open(TestPaths.TinyFixture);

    public Qwen2VisionTransformer Vision { get; }
    internal LoadReport VisionReport { get; }
    public Qwen2CausalLm Lm { get; }
    internal LoadReport LmReport { get; }
    public VggtModel Vggt { get; }
    internal LoadReport VggtReport { get; }

    /// <summary>video_tchw [4, 3, 84, 112] in [0, 1]: VGGT's input.</summary>
    public Tensor Frames { get; }

    /// <summary>embed(input_ids) with the video_pad rows replaced by the fixture's fused (vision + spatial) embeddings.</summary>
    public Tensor FusedInputsEmbeds(Qwen2CausalLm lm)
    {
        using var ids = Read("input_ids");
        using var fused = Read("fused_embeds");
        return lm.EmbedWithVisualTokens(ids, fused, Checkpoint.Config.Tokens.VideoTokenId);
    }

    public (Tensor PositionIds, Tensor RopeDeltas) RopeIndexOfFixture()
    {
        using var ids = Read("input_ids");
        using var grid = Read("video_grid_thw");
        using var seconds = Read("second_per_grid_ts");
        return RopeIndex.Compute(ids, Checkpoint.Config.Tokens, Checkpoint.Config.Vision, grid, seconds);
    }

    public void Dispose()
    {
        Vision.Dispose();
        Lm.Dispose();
        Vggt.Dispose();
        Frames.Dispose();
        Checkpoint.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class TinyFixtureCollection : ICollectionFixture<TinyFixture>
{
    public const string Name = "Tiny reference fixture";
}
