using static TorchSharp.torch;

namespace SpatialMllm.Research.Processing;

/// <summary>A video's (or image's) patch grid: T temporal patches (frame pairs) × H × W patches of 14 px.</summary>
public readonly record struct GridThw(int T, int H, int W)
{
    public int PatchCount => T * H * W;

    /// <summary>LLM tokens after the 2×2 patch merger: T·H·W / merge².</summary>
    public int MergedTokenCount(int mergeSize)
    {
        if (H % mergeSize != 0 || W % mergeSize != 0)
            throw new InvalidOperationException($"Grid {this} does not divide into {mergeSize}×{mergeSize} merge units.");
        return PatchCount / (mergeSize * mergeSize);
    }

    /// <summary>video_grid_thw as the model takes it: int64 [1, 3].</summary>
    public Tensor ToTensor() => tensor(new long[] { T, H, W }).reshape(1, 3);

    public override string ToString() => $"({T}, {H}, {W})";
}
