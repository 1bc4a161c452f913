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

    /// <summary>Decoded frames by video path, most recently used last (<see cref="SftDataOptions.DecodedVideoCache"/>).</summary>
    readonly LinkedList<(string Path, Tensor Frames, double Fps, IReadOnlyList<int> Indices)> _decoded = new();

    /// <summary>Reads and processes the row's video and tokenizes it; throws <see cref="AnnotationException"/> naming
    /// the row for anything wrong with it (missing or unreadable video, too long).</summary>
    public SftExample Build(SftRow row)
    {
        try
        {
            var (frames, fps, indices) = Decode(row.VideoPath);
            try { return Build(frames, fps, row) with { VideoPath = row.VideoPath, FrameIndices = indices }; }
            finally { if (Options.DecodedVideoCache == 0) frames.Dispose(); }
        }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException or InvalidOperationException or InvalidDataException)
        {
            throw new AnnotationException(row.File, row.Line, e.Message.Contains(row.VideoPath, StringComparison.Ordinal) ? e.Message : $"{row.VideoPath}: {e.Message}");
        }
    }

    /// <summary>The frames data_qwen.py samples from a video, decoded, and the fps for the time axis; from the cache of
    /// decoded videos when it holds them (the cache owns what it holds).</summary>
    (Tensor Frames, double Fps, IReadOnlyList<int> Indices) Decode(string path)
    {
        for (var node = _decoded.First; node != null; node = node.Next)
            if (node.Value.Path == path)
            {
                _decoded.Remove(node);
                _decoded.AddLast(node);
                return (node.Value.Frames, node.Value.Fps, node.Value.Indices);
            }
        var video = VideoSource.Open(path);
        var (indices, fps) = FrameIndices(video.Info);
        var frames = video.ReadFrames(indices);
        if (Options.DecodedVideoCache == 0) return (frames, fps, indices);
        frames.DetachFromDisposeScope();
        if (_decoded.Count == Options.DecodedVideoCache)
        {
            _decoded.First!.Value.Frames.Dispose();
            _decoded.RemoveFirst();
        }
        _decoded.AddLast((path, frames, fps, indices));
        return (frames, fps, indices);
    }

    /// <summary>Frees the decoded videos kept.</summary>
    public void Dispose()
    {
        foreach (var (_, frames, _, _) in _decoded) frames.Dispose();
        _decoded.Clear();
    }

    /// <summary>An example from frames already decoded (uint8 [T, 3, H, W], e.g. made in memory): resized within the
    /// frame pixel bounds, patched, tokenized with the row's conversation (its video path is not read).</summary>
    public SftExample Build(Tensor framesUint8, double fps, SftRow row)
    {
        var size = SmartResize.Compute((int)framesUint8.shape[2], (int)framesUint8.shape[3], processor.Config.Factor,
            Options.VideoMinFramePixels, Options.VideoMaxFramePixels);
        using var resized = QwenVideoProcessor.ResizeFrames(framesUint8, size.Height, size.Width);
        var inputs = processor.ProcessResized(resized, fps);
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
