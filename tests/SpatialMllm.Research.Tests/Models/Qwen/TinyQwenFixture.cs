using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Models.Qwen;

/// <summary>The tiny checkpoint's vision tower and language model (fp32, CPU) plus its golden inputs/outputs, loaded once.</summary>
public sealed class TinyQwenFixture : IDisposable
{
    internal Checkpoint Checkpoint { get; } = Checkpoint.Open(TestPaths.TinyFixture);
    internal SafetensorsFile Io { get; } = SafetensorsFile.Open(Path.Combine(TestPaths.TinyFixture, "io.safetensors"));
    public Qwen2VisionTransformer Vision { get; }
    public Qwen2CausalLm Lm { get; }
    internal LoadReport VisionReport { get; }
    internal LoadReport LmReport { get; }

    public TinyQwenFixture()
    {
        Vision = new Qwen2VisionTransformer(Checkpoint.Config.Vision);
        VisionReport = StateDictLoader.Load(Vision, Checkpoint, "visual.");
        Lm = new Qwen2CausalLm(Checkpoint.Config.Text);
        LmReport = Lm.LoadFrom(Checkpoint);
        Vision.eval();
        Lm.eval();
    }

    public Tensor Read(string key) => Io.Read(key);

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
        Io.Dispose();
        Checkpoint.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class TinyQwenCollection : ICollectionFixture<TinyQwenFixture>
{
    public const string Name = "Tiny Qwen2.5-VL";
}

internal static class Parity
{
    /// <summary>max |actual − expected| / max(1, |expected|): absolute error for small values, relative for large.</summary>
    public static double MaxError(Tensor actual, Tensor expected)
    {
        using var scope = torch.NewDisposeScope();
        Assert.Equal(expected.shape, actual.shape);
        var a = actual.to(ScalarType.Float64);
        var e = expected.to(ScalarType.Float64);
        return ((a - e).abs() / e.abs().clamp_min(1.0)).max().item<double>();
    }

    public static long[] Longs(Tensor t)
    {
        using var host = t.to(ScalarType.Int64).cpu().contiguous();
        return host.data<long>().ToArray();
    }
}
