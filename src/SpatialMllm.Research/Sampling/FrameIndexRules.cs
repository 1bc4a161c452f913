using TorchSharp;

namespace SpatialMllm.Research.Sampling;

/// <summary>The reference implementations' index arithmetic, reproduced bit for bit.</summary>
internal static class FrameIndexRules
{
    /// <summary>qwen-vl-utils <c>round_by_factor(nframes, 2)</c>: Python round (half to even) of n/2, times 2.</summary>
    public static int RoundToEven(int frames) => (int)Math.Round(frames / 2.0, MidpointRounding.ToEven) * 2;

    /// <summary>
    /// qwen-vl-utils: <c>torch.linspace(0, N-1, n).round().long()</c>. Computed by libtorch itself in float32,
    /// because its linspace (forward from the start for the first half, backward from the end for the
    /// second) decides which values land on .5 before round-half-to-even.
    /// </summary>
    public static int[] RoundedLinspace(int frameCount, int n)
    {
        using var scope = torch.NewDisposeScope();
        return torch.linspace(0, frameCount - 1, n, dtype: torch.float32).round().to(torch.int64)
            .data<long>().Select(i => (int)i).ToArray();
    }

    /// <summary>
    /// sa_sampling.py: <c>np.linspace(0, N-1, num=M, dtype=int)</c>: i·step in float64, the last value set to
    /// N-1 exactly, then truncated (floor; all values are non-negative).
    /// </summary>
    public static int[] TruncatedLinspace(int frameCount, int m)
    {
        if (m == 1) return [0];
        double step = (double)(frameCount - 1) / (m - 1);
        int[] indices = new int[m];
        for (int i = 0; i < m - 1; i++) indices[i] = (int)Math.Floor(i * step);
        indices[m - 1] = frameCount - 1;
        return indices;
    }
}
