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
    readonly IReadOnlyList<(int T, int H, int W)> _grids;
    readonly int _mergeSize, _windowUnits;

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

        PatchRowCol = PatchPositions(grids, mergeSize, UnitOrder);
        (_grids, _mergeSize, _windowUnits) = (grids, mergeSize, windowUnits);
    }

    /// <summary>
    /// The processed position of every patch, in transformers' window order (<see cref="WindowIndex"/>): what the
    /// tower's hooks show, so that a block's input and output there are what transformers' forward passes and returns.
    /// </summary>
    public long[] PatchesInWindowOrder()
    {
        var (windowIndex, _) = WindowIndex(_grids, _mergeSize, _windowUnits);
        var patches = new long[PatchCount];
        int p = 0;
        foreach (long unit in windowIndex)
            for (long s = 0, first = UnitPosition[unit] * _unitSize; s < _unitSize; s++)
                patches[p++] = first + s;
        return patches;
    }

    /// <summary>
    /// transformers' <c>get_window_index</c>: the merge units (indices into the input units) in window order — frame by
    /// frame, windows in raster order, units in raster order within a window — and <c>cu_window_seqlens</c>, the window
    /// boundaries in patches starting at 0. Each frame's merged grid is padded to a multiple of the window (a whole extra
    /// window when it already divides), so empty windows repeat a boundary, as in the reference.
    /// </summary>
    public static (long[] WindowIndex, int[] CuWindowSeqlens) WindowIndex(IReadOnlyList<(int T, int H, int W)> grids, int mergeSize, int windowUnits)
    {
        int unitSize = mergeSize * mergeSize;
        var windowIndex = new List<long>();
        var cuWindowSeqlens = new List<int> { 0 };
        long unitBase = 0;
        foreach (var (t, h, w) in grids)
        {
            int rows = h / mergeSize, cols = w / mergeSize;
            int windowsH = (rows + windowUnits - rows % windowUnits) / windowUnits;
            int windowsW = (cols + windowUnits - cols % windowUnits) / windowUnits;
            for (int frame = 0; frame < t; frame++)
            for (int wh = 0; wh < windowsH; wh++)
            for (int ww = 0; ww < windowsW; ww++)
            {
                int units = 0;
                for (int r = wh * windowUnits; r < Math.Min((wh + 1) * windowUnits, rows); r++)
                for (int c = ww * windowUnits; c < Math.Min((ww + 1) * windowUnits, cols); c++, units++)
                    windowIndex.Add(unitBase + ((long)frame * rows + r) * cols + c);
                cuWindowSeqlens.Add(cuWindowSeqlens[^1] + units * unitSize);
            }
            unitBase += (long)t * rows * cols;
        }
        return (windowIndex.ToArray(), cuWindowSeqlens.ToArray());
    }

    /// <summary>
    /// Patch (row, col) of every patch, [patches·2]: the units of <paramref name="unitOrder"/> (indices into the input
    /// units; null: the input order), unit (row r, col c) holding patches (r·m + i, c·m + j), i, j &lt; m.
    /// </summary>
    public static float[] PatchPositions(IReadOnlyList<(int T, int H, int W)> grids, int mergeSize, long[]? unitOrder = null)
    {
        // Per input unit: its (row, col) within its frame, in units.
        long unitCount = grids.Sum(g => (long)g.T * (g.H / mergeSize) * (g.W / mergeSize));
        var unitRow = new int[unitCount];
        var unitCol = new int[unitCount];
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
        var rowCol = new float[unitCount * mergeSize * mergeSize * 2];
        int p = 0;
        for (long n = 0; n < unitCount; n++)
        {
            long unit = unitOrder?[n] ?? n;
            for (int i = 0; i < mergeSize; i++)
            for (int j = 0; j < mergeSize; j++)
            {
                rowCol[p++] = unitRow[unit] * mergeSize + i;
                rowCol[p++] = unitCol[unit] * mergeSize + j;
            }
        }
        return rowCol;
    }
}
