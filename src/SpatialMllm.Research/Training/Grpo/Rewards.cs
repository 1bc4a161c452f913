using System.Text.RegularExpressions;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>A question GRPO samples completions for: the video, the prompt text sent after it, and what a reward needs
/// to judge an answer.</summary>
/// <param name="Id">For messages and logs (the dataset's id).</param>
/// <param name="Video">The video file or frame folder.</param>
/// <param name="Prompt">The user's text after the video (VSI-Bench's prompt for a VSI-Bench question).</param>
/// <param name="Solution">The ground-truth answer, as the dataset gives it.</param>
/// <param name="VsiBench">The VSI-Bench question when the row is one (its type decides exact match or MRA); null otherwise.</param>
/// <param name="References">The reference answers a caption metric compares with (ScanQA's <c>answers</c>); null otherwise.</param>
public sealed record GrpoQuestion(string Id, string Video, string Prompt, string Solution, VsiBenchQuestion? VsiBench = null,
    IReadOnlyList<string>? References = null);

/// <summary>One sampled completion, as a reward function sees it.</summary>
/// <param name="Text">The completion decoded without special tokens (TRL's completions text).</param>
/// <param name="TokenIds">The completion's tokens, the final eos included when it ended on one.</param>
/// <param name="Truncated">It reached max_completion_length without an eos.</param>
public sealed record GrpoCompletion(GrpoQuestion Question, string Text, IReadOnlyList<int> TokenIds, bool Truncated);

/// <summary>A named reward function: a score per completion, or null where it has none to give (TRL's None: the
/// completion is left out of that function's mean, and one no function scores gets advantage 0).</summary>
public sealed record Reward(string Name, Func<GrpoCompletion, double?> Score)
{
    public override string ToString() => Name;
}

/// <summary>
/// The built-in rewards and a way to add your own from a cell: <c>new Reward("short", c =&gt; c.TokenIds.Count &lt; 20 ? 1 : 0)</c>.
/// <list type="bullet">
/// <item><c>accuracy</c>: VSI-Bench's own metric for the question (<see cref="VsiBench.ScoreAnswer"/>: exact match for
/// multiple choice, mean relative accuracy for numbers), on the last &lt;answer&gt; block when there is one;</item>
/// <item><c>format</c>: 1 when the whole completion is <c>&lt;think&gt;…&lt;/think&gt;&lt;answer&gt;…&lt;/answer&gt;</c>
/// (VLM-R1's <c>re.fullmatch(r"&lt;think&gt;.*?&lt;/think&gt;\s*&lt;answer&gt;.*?&lt;/answer&gt;", content, re.DOTALL)</c>), else 0;</item>
/// <item><c>cider</c>, <c>bleu</c>: ScanQA's CIDEr-D and BLEU-4 of the answer against the question's reference answers, as
/// ScanQA's scorer computes them for one sample (CIDEr's document frequencies over the training questions' references).</item>
/// </list>
/// </summary>
public static class Rewards
{
    public static IReadOnlyList<string> Names { get; } = ["accuracy", "format", "cider", "bleu"];

    /// <summary>open-r1's system prompt for the R1 format (its SYSTEM_PROMPT), sent with <see cref="GrpoConfig.ThinkFormat"/>.</summary>
    public const string ThinkSystemPrompt =
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first thinks about " +
        "the reasoning process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed within " +
        "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here </answer>";

    static readonly Regex FormatPattern = new(@"\A(?:<think>.*?</think>\s*<answer>.*?</answer>)\z", RegexOptions.Singleline | RegexOptions.CultureInvariant);
    static readonly Regex AnswerBlock = new("<answer>(.*?)</answer>", RegexOptions.Singleline | RegexOptions.CultureInvariant);

    /// <summary>The built-in reward of that name (<see cref="Names"/>) for training on <paramref name="questions"/>.</summary>
    public static Reward ByName(string name, IReadOnlyList<GrpoQuestion> questions) => name switch
    {
        "accuracy" => Accuracy(),
        "format" => Format,
        "cider" => Cider(questions),
        "bleu" => Bleu,
        _ => throw new ArgumentException($"Unknown reward '{name}'; built-in ones: {string.Join(", ", Names)}."),
    };

    /// <summary>ScanQA's CIDEr-D of the answer (the last &lt;answer&gt; block's content when there is one) against the
    /// question's references, its document frequencies over the references of <paramref name="corpus"/> (the questions
    /// trained on; ScanQA's scorer takes those it scores); null for a question without references.</summary>
    public static Reward Cider(IEnumerable<GrpoQuestion> corpus)
    {
        var cider = new CaptionMetrics.CiderD(corpus.Where(q => q.References is { Count: > 0 }).Select(q => q.References!));
        return new("cider", c => c.Question.References is { Count: > 0 } references ? cider.Score(ScanQaAnswer(c.Text), references) : null);
    }

    /// <summary>BLEU-4 of the answer against the question's references, as ScanQA's scorer computes it for one sample
    /// (BleuScorer's smoothing, brevity penalty on the closest reference length); null for a question without references.</summary>
    public static Reward Bleu { get; } = new("bleu", c =>
        c.Question.References is { Count: > 0 } references ? CaptionMetrics.Bleu([new(ScanQaAnswer(c.Text), references)])[3] : null);

    /// <summary>The answer as ScanQA's scorer reads a prediction: Python-stripped, trailing dots removed.</summary>
    static string ScanQaAnswer(string text) => PythonText.RStrip(PythonText.Strip(ExtractAnswer(text)), '.');

    /// <summary>R1 format: the completion is exactly a think block then an answer block (whitespace between them).</summary>
    public static Reward Format { get; } = new("format", c => FormatPattern.IsMatch(c.Text) ? 1.0 : 0.0);

    /// <summary>The benchmark's metric as the reward: VSI-Bench's score of the answer (the last &lt;answer&gt; block's
    /// content when the completion has one); null for a question that is not VSI-Bench's.</summary>
    public static Reward Accuracy(VsiBenchScoringProfile? profile = null) => new("accuracy", c =>
        c.Question.VsiBench is { } question ? VsiBench.ScoreAnswer(question, ExtractAnswer(c.Text), profile).Score : null);

    /// <summary>The content of the last &lt;answer&gt;…&lt;/answer&gt; block, or the whole text when there is none.</summary>
    public static string ExtractAnswer(string text)
    {
        var matches = AnswerBlock.Matches(text);
        return matches.Count > 0 ? matches[^1].Groups[1].Value.Trim() : text;
    }
}
