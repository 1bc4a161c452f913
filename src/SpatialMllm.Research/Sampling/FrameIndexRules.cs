namespace SpatialMllm.Research.Sampling;

/// <summary>sa_sampling.py's candidate index arithmetic, reproduced bit for bit (the uniform rule of qwen-vl-utils is
/// <see cref="Processing.VideoFrameSampling"/>).</summary>
internal static class FrameIndexRules
{
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
