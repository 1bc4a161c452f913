using SpatialMllm.Research.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// M-RoPE position ids for a prompt with images/videos: transformers 4.51.3's <c>get_rope_index</c>, which the
/// checkpoints were trained with. Text runs get 1D positions (equal on t, h, w); a visual block gets
/// (t·⌊second_per_grid_t⌋·tokens_per_second, row, col) offset by the position after the preceding text; text after a
/// block starts at the maximum position so far + 1.
/// </summary>
public static class RopeIndex
{
    /// <summary>
    /// input_ids [B, L] → position_ids [3, B, L] and rope_deltas [B] (max position + 1 − L, added to the cache length
    /// to position decoded tokens), both int64 on input_ids' device.
    /// </summary>
    /// <param name="videoGridThw">[videos, 3] in patches, in prompt order across the batch.</param>
    /// <param name="secondPerGridTs">[videos] seconds per temporal grid step; truncated to an integer as 4.51 does
    /// (2.5 → 2). Null: 1 per video.</param>
    /// <param name="imageGridThw">[images, 3]; an image's temporal positions are all 0.</param>
    /// <param name="attentionMask">[B, L], 1 for real tokens; padded positions get position 1 as in transformers.</param>
    public static (Tensor PositionIds, Tensor RopeDeltas) Compute(
        Tensor inputIds, SpecialTokenIds tokens, Qwen2VisionConfig vision,
        Tensor? videoGridThw = null, Tensor? secondPerGridTs = null, Tensor? imageGridThw = null, Tensor? attentionMask = null)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input_ids must be [B, L], got [{string.Join(", ", inputIds.shape)}].");
        int batch = (int)inputIds.shape[0], length = (int)inputIds.shape[1];
        long[] ids = HostLongs(inputIds);
        long[] mask = attentionMask is null ? Enumerable.Repeat(1L, ids.Length).ToArray() : HostLongs(attentionMask);
        if (mask.Length != ids.Length) throw new ArgumentException("attention_mask must have the shape of input_ids.");

        var positions = new long[3 * batch * length];
        var deltas = new long[batch];
        if (videoGridThw is null && imageGridThw is null)
            TextOnly(mask, batch, length, attentionMask is not null, positions, deltas);
        else
        {
            var videos = Grids(videoGridThw);
            var images = Grids(imageGridThw);
            long[] secondsPerGrid = secondPerGridTs is null
                ? Enumerable.Repeat(1L, videos.Count).ToArray()
                // torch.as_tensor(second_per_grid_t, dtype=int64) in 4.51: truncation toward zero.
                : HostDoubles(secondPerGridTs).Select(s => (long)s).ToArray();
            int videoIndex = 0, imageIndex = 0;
            for (int b = 0; b < batch; b++)
            {
                var kept = Enumerable.Range(0, length).Where(i => mask[b * length + i] == 1).ToArray();
                var sample = kept.Select(i => ids[b * length + i]).ToArray();
                var samplePositions = Sample(sample, tokens, vision, videos, images, secondsPerGrid, ref videoIndex, ref imageIndex);
                long max = long.MinValue;
                for (int k = 0; k < kept.Length; k++)
                    for (int axis = 0; axis < 3; axis++)
                    {
                        positions[(axis * batch + b) * length + kept[k]] = samplePositions[axis][k];
                        max = Math.Max(max, samplePositions[axis][k]);
                    }
                for (int i = 0; i < length; i++)
                    if (mask[b * length + i] != 1)
                        for (int axis = 0; axis < 3; axis++) positions[(axis * batch + b) * length + i] = 1;
                deltas[b] = (kept.Length == 0 ? 0 : max + 1) - length;
            }
        }
        var device = inputIds.device;
        return (torch.tensor(positions, [3, batch, length], device: device), torch.tensor(deltas, device: device));
    }

    /// <summary>Positions of one unpadded sample: [3][tokens].</summary>
    static long[][] Sample(long[] ids, SpecialTokenIds tokens, Qwen2VisionConfig vision,
        List<(long T, long H, long W)> videos, List<(long T, long H, long W)> images, long[] secondsPerGrid,
        ref int videoIndex, ref int imageIndex)
    {
        var result = new[] { new long[ids.Length], new long[ids.Length], new long[ids.Length] };
        int written = 0;
        long next = 0; // max position so far + 1
        void Text(int count)
        {
            for (int i = 0; i < count; i++, written++)
                for (int axis = 0; axis < 3; axis++) result[axis][written] = next + i;
            next += count;
        }

        // A block counts when its vision_start is directly followed by the image or video token, as in transformers.
        int remainingImages = 0, remainingVideos = 0;
        for (int i = 0; i + 1 < ids.Length; i++)
            if (ids[i] == tokens.VisionStartTokenId)
            {
                if (ids[i + 1] == tokens.ImageTokenId) remainingImages++;
                else if (ids[i + 1] == tokens.VideoTokenId) remainingVideos++;
            }
        int st = 0, blocks = remainingImages + remainingVideos;
        for (int block = 0; block < blocks; block++)
        {
            int edImage = remainingImages > 0 ? IndexOf(ids, tokens.ImageTokenId, st) : int.MaxValue;
            int edVideo = remainingVideos > 0 ? IndexOf(ids, tokens.VideoTokenId, st) : int.MaxValue;
            (long T, long H, long W) grid;
            long temporalStep;
            int ed;
            if (edImage < edVideo)
            {
                if (imageIndex >= images.Count) throw new ArgumentException("The prompt has more image blocks than image_grid_thw rows.");
                grid = images[imageIndex++];
                temporalStep = 0;
                remainingImages--;
                ed = edImage;
            }
            else
            {
                if (videoIndex >= videos.Count) throw new ArgumentException("The prompt has more video blocks than video_grid_thw rows.");
                temporalStep = secondsPerGrid[videoIndex] * vision.TokensPerSecond;
                grid = videos[videoIndex++];
                remainingVideos--;
                ed = edVideo;
            }
            if (ed == int.MaxValue) throw new ArgumentException("A vision_start token is not followed by its image/video tokens.");
            Text(ed - st);
            long rows = grid.H / vision.SpatialMergeSize, cols = grid.W / vision.SpatialMergeSize;
            long count = grid.T * rows * cols;
            if (written + count > ids.Length)
                throw new ArgumentException($"A visual block needs {count} tokens but the prompt ends first: the video_pad count does not match the grid.");
            long start = next, max = next;
            for (long t = 0; t < grid.T; t++)
                for (long r = 0; r < rows; r++)
                    for (long c = 0; c < cols; c++, written++)
                    {
                        result[0][written] = start + t * temporalStep;
                        result[1][written] = start + r;
                        result[2][written] = start + c;
                        max = Math.Max(max, Math.Max(result[0][written], Math.Max(start + r, start + c)));
                    }
            next = max + 1;
            st = ed + (int)count;
        }
        Text(ids.Length - st);
        return result;
    }

    static void TextOnly(long[] mask, int batch, int length, bool hasMask, long[] positions, long[] deltas)
    {
        for (int b = 0; b < batch; b++)
        {
            long running = -1, max = long.MinValue;
            for (int i = 0; i < length; i++)
            {
                long p;
                if (!hasMask) p = i;
                else
                {
                    running += mask[b * length + i];
                    // cumsum(mask) − 1, masked_fill(mask == 0, 1)
                    p = mask[b * length + i] == 0 ? 1 : running;
                }
                for (int axis = 0; axis < 3; axis++) positions[(axis * batch + b) * length + i] = p;
                max = Math.Max(max, p);
            }
            deltas[b] = hasMask ? max + 1 - length : 0;
        }
    }

    static int IndexOf(long[] ids, long value, int start)
    {
        int i = Array.IndexOf(ids, value, start);
        return i < 0 ? int.MaxValue : i;
    }

    static List<(long T, long H, long W)> Grids(Tensor? grid)
    {
        if (grid is null) return [];
        if (grid.dim() != 2 || grid.shape[1] != 3) throw new ArgumentException($"grid_thw must be [n, 3], got [{string.Join(", ", grid.shape)}].");
        var v = HostLongs(grid);
        return Enumerable.Range(0, v.Length / 3).Select(i => (v[3 * i], v[3 * i + 1], v[3 * i + 2])).ToList();
    }

    static long[] HostLongs(Tensor t)
    {
        using var host = t.to(ScalarType.Int64).cpu().contiguous();
        return host.data<long>().ToArray();
    }

    static double[] HostDoubles(Tensor t)
    {
        using var host = t.to(ScalarType.Float64).cpu().contiguous();
        return host.data<double>().ToArray();
    }
}
