using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Text;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// An annotation row → an <see cref="SftExample"/>, as the seed's <c>LazySupervisedDataset</c> does: the frames
/// (<c>process_video</c>: round(duration / base_interval) clamped to [min, max] frames, <c>np.linspace</c> indices,
/// smart_resize within the frame pixel bounds), and the tokens with labels (<c>preprocess_qwen_2_visual</c>).
/// </summary>
public sealed class SftExampleBuilder(Qwen2Tokenizer tokenizer, QwenVideoProcessor processor, SpecialTokenIds tokens, SftDataOptions? options = null)
    : IDisposable
{
    public SftDataOptions Options { get; } = options ?? new SftDataOptions();

    /// <summary>Processed videos (Qwen's patches and VGGT's frames) by path, most recently used last
    /// (<see cref="SftDataOptions.DecodedVideoCache"/>): an example of a cached video costs a copy and its tokens.</summary>
    readonly LinkedList<(string Path, QwenVideoInputs Inputs, IReadOnlyList<int> Indices)> _cached = new();
    readonly Lock _cacheLock = new();

    /// <summary>Reads and processes the row's video and tokenizes it; throws <see cref="AnnotationException"/> naming
    /// the row for anything wrong with it (missing or unreadable video, too long).</summary>
    public SftExample Build(SftRow row)
    {
        try
        {
            bool caching = Options.DecodedVideoCache > 0;
            var (inputs, indices) = Cached(row.VideoPath) ?? Process(row.VideoPath, keep: caching);
            try
            {
                var (ids, labels) = Tokenize(row, inputs.Grid.MergedTokenCount(processor.Config.MergeSize));
                return new SftExample(ids, labels, caching ? inputs.PixelValuesVideos.clone() : inputs.PixelValuesVideos, inputs.Grid,
                    inputs.SecondPerGridT, caching ? inputs.VideoTchw.clone() : inputs.VideoTchw, row.Source)
                {
                    VideoPath = row.VideoPath, FrameIndices = indices,
                };
            }
            catch when (!caching) { inputs.Dispose(); throw; }
        }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException or InvalidOperationException or InvalidDataException)
        {
            throw new AnnotationException(row.File, row.Line, e.Message.Contains(row.VideoPath, StringComparison.Ordinal) ? e.Message : $"{row.VideoPath}: {e.Message}");
        }
    }

    /// <summary>
    /// Decodes and processes <paramref name="videoPaths"/> in parallel into the cache (as many as it holds, in the order
    /// given), so that the first epoch does not wait for one video at a time; the examples are the same as without. A
    /// video that cannot be read is left out here: its rows report it when they are built. Returns how many were added.
    /// </summary>
    public int Prefetch(IEnumerable<string> videoPaths)
    {
        if (Options.DecodedVideoCache == 0) return 0;
        string[] wanted;
        lock (_cacheLock) wanted = [.. videoPaths.Distinct().Where(p => !_cached.Any(c => c.Path == p)).Take(Options.DecodedVideoCache - _cached.Count)];
        int added = 0;
        Parallel.ForEach(wanted, path =>
        {
            try
            {
                Process(path, keep: true);
                Interlocked.Increment(ref added);
            }
            catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException or InvalidOperationException or InvalidDataException) { }
        });
        return added;
    }

    /// <summary>The cached processed video, made most recently used; null when not cached.</summary>
    (QwenVideoInputs Inputs, IReadOnlyList<int> Indices)? Cached(string path)
    {
        lock (_cacheLock)
            for (var node = _cached.First; node != null; node = node.Next)
                if (node.Value.Path == path)
                {
                    _cached.Remove(node);
                    _cached.AddLast(node);
                    return (node.Value.Inputs, node.Value.Indices);
                }
        return null;
    }

    /// <summary>The frames data_qwen.py samples from a video, decoded and processed; kept in the cache (which then owns
    /// them, outside any dispose scope) when <paramref name="keep"/>.</summary>
    (QwenVideoInputs Inputs, IReadOnlyList<int> Indices) Process(string path, bool keep)
    {
        var video = VideoSource.Open(path);
        var (indices, fps) = FrameIndices(video.Info);
        QwenVideoInputs inputs;
        using (var frames = video.ReadFrames(indices)) inputs = Process(frames, fps);
        if (!keep) return (inputs, indices);
        inputs.PixelValuesVideos.DetachFromDisposeScope();
        inputs.VideoTchw.DetachFromDisposeScope();
        lock (_cacheLock)
        {
            if (_cached.Count == Options.DecodedVideoCache)
            {
                _cached.First!.Value.Inputs.Dispose();
                _cached.RemoveFirst();
            }
            _cached.AddLast((path, inputs, indices));
        }
        return (inputs, indices);
    }

    /// <summary>Frees the videos kept.</summary>
    public void Dispose()
    {
        lock (_cacheLock)
        {
            foreach (var (_, inputs, _) in _cached) inputs.Dispose();
            _cached.Clear();
        }
    }

    /// <summary>uint8 frames [T, 3, H, W] resized within the frame pixel bounds and patched.</summary>
    QwenVideoInputs Process(Tensor framesUint8, double fps)
    {
        var size = SmartResize.Compute((int)framesUint8.shape[2], (int)framesUint8.shape[3], processor.Config.Factor,
            Options.VideoMinFramePixels, Options.VideoMaxFramePixels);
        using var resized = QwenVideoProcessor.ResizeFrames(framesUint8, size.Height, size.Width);
        return processor.ProcessResized(resized, fps);
    }

    /// <summary>An example from frames already decoded (uint8 [T, 3, H, W], e.g. made in memory): resized within the
    /// frame pixel bounds, patched, tokenized with the row's conversation (its video path is not read).</summary>
    public SftExample Build(Tensor framesUint8, double fps, SftRow row)
    {
        var inputs = Process(framesUint8, fps);
        try
        {
            var (ids, labels) = Tokenize(row, inputs.Grid.MergedTokenCount(processor.Config.MergeSize));
            return new SftExample(ids, labels, inputs.PixelValuesVideos, inputs.Grid, inputs.SecondPerGridT, inputs.VideoTchw, row.Source);
        }
        catch { inputs.Dispose(); throw; }
    }

    /// <summary>Checks a row without decoding frames (for <c>--dry-run</c>): the video opens and has frames, the text
    /// tokenizes within model_max_length at the frame size the video will have.</summary>
    public void Validate(SftRow row)
    {
        try
        {
            var info = VideoSource.Open(row.VideoPath).Info;
            if (info.FrameCount < 1) throw new InvalidDataException("the video has no frames");
            var (indices, _) = FrameIndices(info);
            var size = SmartResize.Compute(info.Height, info.Width, processor.Config.Factor, Options.VideoMinFramePixels, Options.VideoMaxFramePixels);
            var grid = new GridThw((indices.Count + 1) / 2, size.Height / processor.Config.PatchSize, size.Width / processor.Config.PatchSize);
            Tokenize(row, grid.MergedTokenCount(processor.Config.MergeSize));
        }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException or InvalidOperationException or InvalidDataException)
        {
            throw new AnnotationException(row.File, row.Line, e.Message.Contains(row.VideoPath, StringComparison.Ordinal) ? e.Message : $"{row.VideoPath}: {e.Message}");
        }
    }

    /// <summary>data_qwen.py's frame choice and the fps the RoPE time axis uses.</summary>
    public (IReadOnlyList<int> Indices, double Fps) FrameIndices(VideoInfo info)
    {
        int total = info.FrameCount;
        double length = info.FramesPerSecond is > 0 ? total / info.FramesPerSecond.Value : total / (Options.VideoFrameFps ?? 1.0);
        int wanted = (int)Math.Round(length / Options.BaseInterval, MidpointRounding.ToEven);
        int target = Math.Min(Math.Max(wanted, Options.VideoMinFrames), Options.VideoMaxFrames);
        // np.linspace(0, total - 1, target, dtype=int): truncated toward zero, then np.unique.
        var indices = Enumerable.Range(0, target)
            .Select(i => target == 1 ? 0 : (int)(i * ((double)(total - 1) / (target - 1))))
            .Distinct().Order().ToList();
        double fps = Options.VideoFrameFps ?? indices.Count / length;
        return (indices, fps);
    }

    /// <summary>
    /// preprocess_qwen_2_visual: the system turn and each turn rendered as <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c>
    /// and tokenized separately; labels -100 except the assistant turns, whose header is masked too. The seed masks
    /// the first 3 tokens (Qwen's tokenizer makes "&lt;|im_start|&gt;assistant\n" 3 tokens); here the header's own token
    /// count, which is 3 for Qwen and right for any other tokenizer.
    /// </summary>
    public (long[] Ids, long[] Labels) Tokenize(SftRow row, int videoTokens)
    {
        var ids = new List<long>();
        var labels = new List<long>();
        void Add(string role, string content, bool learn)
        {
            var encoded = tokenizer.Encode($"{QwenSpecialTokens.ImStart}{role}\n{content}{QwenSpecialTokens.ImEnd}\n");
            ids.AddRange(encoded.Select(i => (long)i));
            if (!learn) { labels.AddRange(Enumerable.Repeat(SftExample.IgnoreIndex, encoded.Count)); return; }
            int header = tokenizer.Encode($"{QwenSpecialTokens.ImStart}{role}\n").Count;
            labels.AddRange(encoded.Select((id, i) => i < header ? SftExample.IgnoreIndex : id));
        }
        Add("system", ChatTemplate.DefaultSystemPrompt, learn: false);
        string visual = QwenSpecialTokens.VisionStart + QwenSpecialTokens.VideoPad + QwenSpecialTokens.VisionEnd;
        foreach (var turn in row.Conversations)
            Add(turn.Role, turn.Role == "user" ? turn.Text.Replace("<video>", visual, StringComparison.Ordinal) : turn.Text, learn: turn.Role == "assistant");

        // Expand the one video pad to the video's token count (labels -100 there).
        int at = ids.IndexOf(tokens.VideoTokenId);
        if (at < 0 || ids.Count(i => i == tokens.VideoTokenId) != 1)
            throw new InvalidDataException("the text itself contains <|video_pad|> tokens besides the <video> tag");
        ids.InsertRange(at, Enumerable.Repeat((long)tokens.VideoTokenId, videoTokens - 1));
        labels.InsertRange(at, Enumerable.Repeat(SftExample.IgnoreIndex, videoTokens - 1));
        if (ids.Count > Options.ModelMaxLength)
            throw new InvalidDataException($"{ids.Count} tokens ({videoTokens} of them video) exceed model_max_length {Options.ModelMaxLength}");
        return (ids.ToArray(), labels.ToArray());
    }
}
