using SpatialMllm.Research.Models.Qwen;

namespace SpatialMllm.Research.Tests.Models.Qwen;

public class VisionAttentionPlanTests
{
    [Fact]
    public void Sixteen_frames_at_476x644_batch_into_four_window_sizes_and_one_slice_size()
    {
        var plan = new VisionAttentionPlan([(8, 34, 46)], mergeSize: 2, windowUnits: 4);
        // 17×23 merged units per frame: 4×5 full windows, a 3-unit-wide right column, a 1-unit-high bottom row, a corner.
        Assert.Equal(new[] { (160, 64), (32, 48), (40, 16), (8, 12) }, plan.WindowGroups);
        Assert.Equal(new[] { (8, 1564) }, plan.SliceGroups);
        Assert.Equal(12512, plan.PatchCount);
    }

    [Theory]
    [InlineData(2, 6, 8, 2)]   // the fixture: 3×4 units, 2×2 windows (padding path)
    [InlineData(1, 8, 8, 2)]   // divides exactly: the reference adds an empty window row and column
    [InlineData(3, 34, 46, 4)]
    [InlineData(2, 16, 32, 4)]
    public void Windows_are_the_reference_window_index_segments(int t, int h, int w, int windowUnits)
    {
        var plan = new VisionAttentionPlan([(t, h, w)], mergeSize: 2, windowUnits);
        var ours = new List<string>();
        int offset = 0;
        foreach (var (count, length) in plan.WindowGroups)
            for (int i = 0; i < count; i++, offset += length / 4)
                ours.Add(string.Join(",", plan.UnitOrder.Skip(offset).Take(length / 4).Order()));
        Assert.Equal(ReferenceWindows(t, h / 2, w / 2, windowUnits).Order(), ours.Order());
    }

    /// <summary>transformers' get_window_index, literally: pad with −100 (a whole window when divisible), tile, drop
    /// the padding, cut at cu_window_seqlens with empty windows removed.</summary>
    static IEnumerable<string> ReferenceWindows(int t, int rows, int cols, int window)
    {
        int padH = window - rows % window, padW = window - cols % window;
        int windowsH = (rows + padH) / window, windowsW = (cols + padW) / window;
        for (int f = 0; f < t; f++)
        for (int wh = 0; wh < windowsH; wh++)
        for (int ww = 0; ww < windowsW; ww++)
        {
            var units = new List<long>();
            for (int r = wh * window; r < (wh + 1) * window; r++)
            for (int c = ww * window; c < (ww + 1) * window; c++)
                if (r < rows && c < cols) units.Add((long)f * rows * cols + r * cols + c);
            if (units.Count > 0) yield return string.Join(",", units.Order());
        }
    }
}
