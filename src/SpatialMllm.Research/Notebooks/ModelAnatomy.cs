using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Notebooks;

/// <summary>One token of a prompt with its M-RoPE position (temporal, height, width).</summary>
public sealed record TokenPosition(int Index, int Id, string Kind, long T, long H, long W);

/// <summary>
/// Small views of the model's internal layouts for the teaching notebook: each one runs the library's own code (the
/// vision tower's attention plan, the connector's regrouping) on labelled inputs, so what it shows is what the model does.
/// </summary>
public static class ModelAnatomy
{
    /// <summary>
    /// The vision tower's windows for one temporal slice of <paramref name="grid"/>: [merged rows, merged cols], each
    /// merge unit (2×2 patches) numbered by the window it attends within (windows numbered in raster order), taken from
    /// the attention plan the vision tower runs. The window side in merge units is window_size / patch_size / merge_size;
    /// edge windows are smaller when the grid does not divide.
    /// </summary>
    public static int[,] VisionWindows(GridThw grid, Qwen2VisionConfig vision)
    {
        int merge = vision.SpatialMergeSize;
        int windowUnits = vision.WindowSize / merge / vision.PatchSize;
        var plan = new VisionAttentionPlan([(1, grid.H, grid.W)], merge, windowUnits);
        int rows = grid.H / merge, cols = grid.W / merge;
        var window = new int[rows * cols];
        int position = 0, segment = 0;
        foreach (var (count, length) in plan.WindowGroups)
            for (int w = 0; w < count; w++, segment++)
                for (int u = 0; u < length / (merge * merge); u++)
                    window[plan.UnitOrder[position++]] = segment;
        // The plan batches windows by size; renumber them in raster order of their first unit.
        var raster = window.Distinct().Select((id, n) => (id, n)).ToDictionary(p => p.id, p => p.n);
        var map = new int[rows, cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                map[r, c] = raster[window[r * cols + c]];
        return map;
    }

    /// <summary>
    /// How the connector regroups VGGT patch tokens into one row per merged Qwen token, run through
    /// <see cref="MlpAddConnector.Regroup"/> (what <see cref="MlpAddConnector.MergeSpatialTokens"/> runs) on tokens labelled by (frame, patch row, patch col) with one
    /// channel: row k of the result lists, slot by slot, which frame and patch each of its features comes from.
    /// </summary>
    /// <returns>[merged tokens][temporal merge × spatial merge²] labels like <c>f1 (0,1)</c>.</returns>
    public static string[][] SpatialMergeLayout(int frames, int patchRows, int patchCols, int temporalMerge = 2, int spatialMerge = 2)
    {
        using var scope = torch.NewDisposeScope();
        long p = patchRows * patchCols;
        // label = frame · P + patch: exact in float32 for any grid a notebook shows.
        var labels = torch.arange(frames * p, dtype: float32).reshape(frames, p, 1);
        var merged = MlpAddConnector.Regroup(labels, 0, frames / temporalMerge, patchRows, patchCols, temporalMerge, spatialMerge);
        var values = merged.data<float>().ToArray();
        int width = (int)merged.shape[1];
        return Enumerable.Range(0, (int)merged.shape[0])
            .Select(row => Enumerable.Range(0, width).Select(k =>
            {
                long label = (long)values[row * width + k], patch = label % p;
                return $"f{label / p} ({patch / patchCols},{patch % patchCols})";
            }).ToArray())
            .ToArray();
    }

    /// <summary>
    /// Each prompt token with its M-RoPE (t, h, w) position: position ids [3, 1, L] from <see cref="RopeIndex.Compute"/>
    /// (or the model's <c>position_ids</c> hook) and input ids [1, L]. Kind: "video" for a video pad, "vision start/end",
    /// else "text".
    /// </summary>
    public static IReadOnlyList<TokenPosition> Positions(Tensor positionIds, Tensor inputIds, SpecialTokenIds tokens)
    {
        long[] ids = inputIds.reshape(-1).cpu().to(int64).data<long>().ToArray();
        long[] pos = positionIds.reshape(3, -1).cpu().to(int64).data<long>().ToArray();
        int length = ids.Length;
        if (pos.Length != 3 * length) throw new ArgumentException($"position ids [{string.Join(", ", positionIds.shape)}] do not match {length} input ids.");
        string Kind(long id) => id == tokens.VideoTokenId ? "video" : id == tokens.VisionStartTokenId ? "vision start"
            : id == tokens.VisionEndTokenId ? "vision end" : "text";
        return Enumerable.Range(0, length)
            .Select(i => new TokenPosition(i, (int)ids[i], Kind(ids[i]), pos[i], pos[length + i], pos[2 * length + i]))
            .ToArray();
    }
}
