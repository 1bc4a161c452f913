namespace SpatialMllm.Research.Evaluation;

/// <summary>One VSI-Bench question, with the dataset's own field names and values.</summary>
/// <param name="Options">The lettered options ("A. left", …) of a multiple-choice question; null for a numeric one.</param>
/// <param name="Pruned">True when VSI-Bench-Debiased removed the question; null when the source does not say.</param>
public sealed record VsiBenchQuestion(
    int Id,
    string Dataset,
    string SceneName,
    string QuestionType,
    string Question,
    IReadOnlyList<string>? Options,
    string GroundTruth,
    bool? Pruned)
{
    public bool IsMultipleChoice => VsiBenchQuestionTypes.IsMultipleChoice(QuestionType);

    /// <summary>"{dataset}/{scene_name}": the video every evaluator reads, and the unit of sharding.</summary>
    public string VideoKey => $"{Dataset}/{SceneName}";
}

/// <summary>Which questions of VSI-Bench to use.</summary>
public enum VsiBenchSubset
{
    /// <summary>All questions (the `full` config).</summary>
    Full,
    /// <summary>VSI-Bench-Debiased: the questions with pruned == false.</summary>
    Debiased,
    /// <summary>The questions the debiasing removed (pruned == true).</summary>
    Pruned,
}
