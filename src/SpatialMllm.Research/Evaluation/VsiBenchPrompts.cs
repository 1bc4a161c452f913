namespace SpatialMllm.Research.Evaluation;

/// <summary>The question text Spatial-MLLM v1.1 sends after the video (seed eval_vsibench.py, spec §2.4):
/// no pre-prompt; the options are already lettered.</summary>
public static class VsiBenchPrompts
{
    public const string MultipleChoicePostPrompt = "Answer with the option's letter from the given choices directly.";
    public const string NumericPostPrompt = "Please answer the question using a single word or phrase.";

    public static string Build(VsiBenchQuestion question) => question.IsMultipleChoice
        ? $"{question.Question}\nOptions:\n{string.Join("\n", question.Options!)}\n{MultipleChoicePostPrompt}"
        : $"{question.Question}\n{NumericPostPrompt}";
}
