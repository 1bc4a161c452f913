namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Host-side bookkeeping of the vision tower for a set of videos/images: the order the merge units are processed in,
/// the window segments, the per-frame-pair segments of the full-attention blocks, and each patch's (row, col).
/// </summary>
/// <remarks>
/// transformers permutes the merge units into window order (<c>window_index</c>), runs varlen attention over
/// <c>cu_window_seqlens</c> and undoes the permutation after the merger. Every op except attention acts per token (and
/// the merger per merge unit), so any order that keeps merge units whole and attends within the same segments gives
/// the same result. This plan orders the units by window *size* first, so all windows of one size form one contiguous
/// batch; the full-attention blocks gather each temporal slice back together.
/// <para>The reference pads the merged grid to a multiple of the window (a whole extra window when it already
/// divides) and drops the empty windows; that is exactly a ceil-division tiling from the top-left, used here.</para>
/// </remarks>
internal sealed class VisionAttentionPlan
{
    /// <summary>Merge units of the processed order, as indices into the input (t, row, col, merge-ordered) units.</summary>
    public long[] UnitOrder { get; }
    /// <summary>The inverse of <see cref="UnitOrder"/>: the processed position of each input unit.</summary>
    public long[] UnitPosition { get; }
    /// <summary>Window segments: consecutive groups of equal-size windows, lengths in patches.</summary>
    public (int Count, int Length)[] WindowGroups { get; }
    /// <summary>Patch positions (processed order) regrouped so that each temporal slice is contiguous.</summary>
    public long[] SliceOrder { get; }
    /// <summary>Temporal-slice segments over <see cref="SliceOrder"/>, lengths in patches.</summary>
    public (int Count, int Length)[] SliceGroups { get; }
    /// <summary>[patches·2] (row, col) of every patch in the processed order, for the 2D rotary embedding.</summary>
    public float[] PatchRowCol { get; }
    public int PatchCount => UnitOrder.Length * _unitSize;

    readonly int _unitSize;

    /// <param name="grids">(t, h, w) in patches for each video or image, in input order.</param>
    /// <param name="windowUnits">Window side in merge units: window_size / spatial_merge_size / patch_size.</param>
    public VisionAttentionPlan(IReadOnlyList<(int T, int H, int W)> grids, int mergeSize, int windowUnits)
    {
        _unitSize = mergeSize * mergeSize;
        var windowsBySize = new SortedDictionary<int, List<long[]>>(Comparer<int>.Create((a, b) => b.CompareTo(a)));
        var slices = new List<(long FirstUnit, int Units)>();
        long unitBase = 0;
        foreach (var (t, h, w) in grids)
        {
            if (t <= 0 || h <= 0 || w <= 0 || h % mergeSize != 0 || w % mergeSize != 0)
                throw new ArgumentException($"grid_thw ({t}, {h}, {w}): each size must be positive and h, w multiples of spatial_merge_size {mergeSize}.");
            int rows = h / mergeSize, cols = w / mergeSize;
            for (int frame = 0; frame < t; frame++, unitBase += rows * cols)
            {
                slices.Add((unitBase, rows * cols));
                for (int r0 = 0; r0 < rows; r0 += windowUnits)
                for (int c0 = 0; c0 < cols; c0 += windowUnits)
                {
                    int r1 = Math.Min(r0 + windowUnits, rows), c1 = Math.Min(c0 + windowUnits, cols);
                    var window = new long[(r1 - r0) * (c1 - c0)];
                    int n = 0;
                    for (int r = r0; r < r1; r++)
                    for (int c = c0; c < c1; c++)
                        window[n++] = unitBase + r * cols + c;
                    if (!windowsBySize.TryGetValue(window.Length, out var list)) windowsBySize[window.Length] = list = [];
                    list.Add(window);
                }
            }
        }

        UnitOrder = windowsBySize.Values.SelectMany(list => list.SelectMany(window => window)).ToArray();
        WindowGroups = windowsBySize.Select(kv => (kv.Value.Count, kv.Key * _unitSize)).ToArray();

        UnitPosition = new long[UnitOrder.Length];
        for (int i = 0; i < UnitOrder.Length; i++) UnitPosition[UnitOrder[i]] = i;

        // Full attention: one segment per temporal slice (frame pair); equal-size slices batch together.
        var sliceGroups = new List<(int Count, int Length)>();
        var sliceOrder = new List<long>(PatchCount);
        foreach (var group in slices.GroupBy(s => s.Units))
        {
            sliceGroups.Add((group.Count(), group.Key * _unitSize));
            foreach (var (firstUnit, units) in group)
                for (long u = firstUnit; u < firstUnit + units; u++)
                for (int s = 0; s < _unitSize; s++)
                    sliceOrder.Add(UnitPosition[u] * _unitSize + s);
        }
        SliceGroups = sliceGroups.ToArray();
        SliceOrder = sliceOrder.ToArray();

        PatchRowCol = PatchPositions(grids, mergeSize);
    }

    /// <summary>Patch (row, col) in processed order: unit (row r, col c) holds patches (r·m + i, c·m + j), i, j &lt; m.</summary>
    float[] PatchPositions(IReadOnlyList<(int T, int H, int W)> grids, int mergeSize)
    {
        // Per input unit: (video grid width in units, unit index within its frame).
        var unitRow = new int[UnitOrder.Length];
        var unitCol = new int[UnitOrder.Length];
        long unitBase = 0;
        foreach (var (t, h, w) in grids)
        {
            int rows = h / mergeSize, cols = w / mergeSize;
            for (long u = 0; u < (long)t * rows * cols; u++)
            {
                long inFrame = u % (rows * cols);
                unitRow[unitBase + u] = (int)(inFrame / cols);
                unitCol[unitBase + u] = (int)(inFrame % cols);
            }
            unitBase += (long)t * rows * cols;
        }
        var rowCol = new float[PatchCount * 2];
        int p = 0;
        foreach (long unit in UnitOrder)
            for (int i = 0; i < mergeSize; i++)
            for (int j = 0; j < mergeSize; j++)
            {
                rowCol[p++] = unitRow[unit] * mergeSize + i;
                rowCol[p++] = unitCol[unit] * mergeSize + j;
            }
        return rowCol;
    }
}
