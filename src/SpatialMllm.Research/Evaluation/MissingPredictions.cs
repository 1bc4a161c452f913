namespace SpatialMllm.Research.Evaluation;

/// <summary>What to do with questions that have no prediction.</summary>
public enum MissingPredictions
{
    /// <summary>Refuse to score (the default: a partial run must not pass for a full one).</summary>
    Error,
    /// <summary>Score each as an empty answer, i.e. wrong, over the whole set.</summary>
    CountAsWrong,
    /// <summary>Score only the answered questions.</summary>
    Skip,
}
