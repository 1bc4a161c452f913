namespace SpatialMllm.Research.Training;

/// <summary>
/// How videos and text become examples, named after the seed's <c>DataArguments</c>; the defaults are
/// <c>spatial_mllm_train_demo.sh</c>'s (16 frames, 4 fps, 293,216–324,576 pixels a frame).
/// </summary>
public sealed record SftDataOptions
{
    public int VideoMaxFrames { get; init; } = 16;
    public int VideoMinFrames { get; init; } = 16;
    /// <summary>Seconds per sampled frame before the min/max clamp (data_qwen.py's <c>base_interval</c>).</summary>
    public double BaseInterval { get; init; } = 2;
    /// <summary>The nominal fps the RoPE time axis assumes (<c>video_frame_fps</c>); null: frames / duration.</summary>
    public double? VideoFrameFps { get; init; } = 4;
    public int VideoMinFramePixels { get; init; } = 293216;
    public int VideoMaxFramePixels { get; init; } = 324576;
    /// <summary>Longest sequence; a longer example is rejected (the seed truncates, which can cut the video pads).</summary>
    public int ModelMaxLength { get; init; } = 8192;
    /// <summary>Videos that <see cref="SftExampleBuilder"/> keeps decoded and processed (Qwen's float patches and VGGT's
    /// frames: about 8 × the uint8 frames' memory) for later rows of the same video (least recently used dropped first);
    /// 0: none. The trainer decodes them ahead in parallel when they all fit.</summary>
    public int DecodedVideoCache { get; init; }
}
