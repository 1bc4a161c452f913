using SpatialMllm.Research.Models.Qwen;

namespace SpatialMllm.Research.Models;

/// <summary>Inference switches that need no code change.</summary>
/// <param name="SpatialLayer">VGGT aggregator layer the connector reads (negative from the end); null: the config's
/// <c>spatial_embeds_layer_idx</c>.</param>
/// <param name="Generation">Decoding settings; null: the seed's evaluation settings with the checkpoint's eos ids.</param>
/// <param name="ResizedSize">An explicit resized_height/resized_width for the frames (ScanQA: 480×640 → 476×644);
/// null: qwen-vl-utils' pixel budget for the video.</param>
/// <param name="SharePrefix">Prefill the prompt's part up to the end of the visual tokens once per <see cref="VideoFeatures"/>
/// and keep its KV cache, so each further question prefills only its own tokens (same answers; false: prefill the whole
/// prompt every time, for comparison). Not used while <see cref="SpatialMllmModel.Hooks"/> has a hook, so that hooks
/// see the whole prompt.</param>
/// <param name="BatchSize">At most this many questions of one video are answered together by
/// <see cref="SpatialMllmModel.AnswerAll"/> (each holds a KV cache of its whole prompt: ~120 MB a question for
/// Qwen2.5-VL-3B at 16 frames in bf16).</param>
public sealed record AnswerOptions(FusionMode Fusion = FusionMode.Full, int? SpatialLayer = null, int MaxNewTokens = 1024,
    GenerationOptions? Generation = null, (int Height, int Width)? ResizedSize = null, bool SharePrefix = true, int BatchSize = 32);

public sealed record StageTiming(string Stage, double Milliseconds);
