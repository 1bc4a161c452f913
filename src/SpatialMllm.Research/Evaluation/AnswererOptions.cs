namespace SpatialMllm.Research.Evaluation;

/// <summary>How the answerer samples and decodes; the model-independent part of a run's configuration.</summary>
/// <param name="ResizedSize">An explicit frame size (ScanQA's resized_height/width 480×640); null: the pixel budget.</param>
/// <param name="SharePrefix">A video's questions share the prefilled prompt prefix (<see cref="Models.AnswerOptions.SharePrefix"/>);
/// the answers are the same either way.</param>
/// <param name="BatchSize">At most this many questions of a video decoded together (<see cref="Models.AnswerOptions.BatchSize"/>);
/// the answers are the same for any size.</param>
internal sealed record AnswererOptions(int Frames, SamplerKind Sampler, int MaxNewTokens, (int Height, int Width)? ResizedSize = null,
    bool SharePrefix = true, int BatchSize = 32);

internal enum SamplerKind { Uniform, SpaceAware }
