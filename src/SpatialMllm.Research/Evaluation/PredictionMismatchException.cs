namespace SpatialMllm.Research.Evaluation;

/// <summary>Predictions that do not line up with the questions; the message has the counts.</summary>
public sealed class PredictionMismatchException(PredictionCoverage coverage, string hint)
    : Exception(coverage.Describe() + (hint.Length > 0 ? Environment.NewLine + hint : ""))
{
    public PredictionCoverage Coverage { get; } = coverage;
}
