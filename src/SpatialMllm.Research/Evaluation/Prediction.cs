namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// One row of a results file: a model's answer to one question. Written by <c>evaluate</c> as the JSON line
/// <c>{"id", "prediction", "video"}</c> (<see cref="ResultsFile"/>), read from that and the seed's formats by
/// <see cref="PredictionFile"/>.
/// </summary>
/// <param name="Id">The question's id, as text (VSI-Bench's integer ids are written back as JSON numbers).</param>
/// <param name="Text">The answer.</param>
/// <param name="Video">The video key ("{dataset}/{scene}") the answer is about; null where the file does not say.</param>
public sealed record Prediction(string Id, string Text, string? Video = null);
