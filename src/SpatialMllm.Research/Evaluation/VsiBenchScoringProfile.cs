using System.Globalization;
using System.Text.RegularExpressions;

namespace SpatialMllm.Research.Evaluation;

/// <summary>How one prediction was read and scored under one profile.</summary>
/// <param name="Reading">What the profile compared, in words, e.g. <c>"b. table" ≠ "b"</c> or <c>2.2 vs 2.0 → 0.9</c>.</param>
public sealed record VsiBenchQuestionScore(int Id, string QuestionType, string Prediction, string GroundTruth, double Score, string Reading);

/// <summary>
/// A named set of per-question scoring rules. Aggregation (per type, rel-direction merge, micro and macro) is the same
/// for every profile; see <see cref="VsiBenchScores"/>.
/// </summary>
public abstract class VsiBenchScoringProfile
{
    /// <summary>The seed's rules (Spatial-MLLM v1.1 dataset_utils.py): last &lt;answer&gt; block, whitespace and trailing-dot
    /// cleanup, lower case, exact match; MRA in float32 with strict "&lt;" and |gt| + 1e-8.</summary>
    public static VsiBenchScoringProfile SpatialMllm { get; } = new SpatialMllmProfile();

    /// <summary>thinking-in-space / lmms-eval (≤ 2026-07) rules: first space-separated token, trailing dots stripped,
    /// case-insensitive match; float() of that token; MRA in double with "≤" and numpy linspace(0.5, 0.95, 10).</summary>
    public static VsiBenchScoringProfile Official { get; } = new OfficialProfile();

    public static IReadOnlyList<VsiBenchScoringProfile> All { get; } = [SpatialMllm, Official];

    public static VsiBenchScoringProfile FromName(string name) =>
        All.FirstOrDefault(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"Unknown scoring profile '{name}'; known: {string.Join(", ", All.Select(p => p.Name))}.");

    public abstract string Name { get; }

    public override string ToString() => Name;

    internal VsiBenchQuestionScore Score(VsiBenchQuestion question, string prediction)
    {
        var (score, reading) = question.IsMultipleChoice
            ? ScoreChoice(prediction, question.GroundTruth)
            : ScoreNumber(prediction, question.GroundTruth);
        return new VsiBenchQuestionScore(question.Id, question.QuestionType, prediction, question.GroundTruth, score, reading);
    }

    private protected abstract (double Score, string Reading) ScoreChoice(string prediction, string groundTruth);
    private protected abstract (double Score, string Reading) ScoreNumber(string prediction, string groundTruth);

    private protected static string Quote(string s) => "\"" + s.Replace("\n", "\\n").Replace("\r", "\\r") + "\"";
    private protected static string Num(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    internal sealed class SpatialMllmProfile : VsiBenchScoringProfile
    {
        static readonly Regex AnswerBlock = new("<answer>(.*?)</answer>", RegexOptions.Singleline | RegexOptions.CultureInvariant);

        /// <summary>torch.arange(0.5, 0.975, 0.05, float32) computes each value in double and rounds it to float32;
        /// 1 - θ is then taken in float32.</summary>
        static readonly float[] Tolerances = [.. Enumerable.Range(0, 10).Select(i => 1f - (float)(0.5 + 0.05 * i))];

        public override string Name => "spatial-mllm";

        /// <summary>clean_text: the last &lt;answer&gt; block's content if any; CR/LF to spaces; whitespace runs to one
        /// space; strip; trailing dots removed; lower case.</summary>
        internal static string Clean(string text)
        {
            var matches = AnswerBlock.Matches(text);
            string s = matches.Count > 0 ? matches[^1].Groups[1].Value : text;
            s = PythonText.CollapseWhitespace(s.Replace('\n', ' ').Replace('\r', ' '));
            return PythonText.RStrip(PythonText.Strip(s), '.').ToLowerInvariant();
        }

        private protected override (double, string) ScoreChoice(string prediction, string groundTruth)
        {
            string pred = PythonText.Strip(Clean(prediction)), gt = PythonText.Strip(Clean(groundTruth));
            bool hit = pred == gt;
            return (hit ? 1.0 : 0.0, $"{Quote(pred)} {(hit ? "=" : "≠")} {Quote(gt)}");
        }

        private protected override (double, string) ScoreNumber(string prediction, string groundTruth)
        {
            string pred = Clean(prediction);
            // normalize_number deletes commas before float(), so "1,000" reads as 1000.
            if (!PythonText.TryParseFloat(pred.Replace(",", ""), out double p)) return (0.0, $"{Quote(pred)} is not a number");
            PythonText.TryParseFloat(Clean(groundTruth).Replace(",", ""), out double g);
            double mra = Mra(p, g);
            return (mra, $"{Num(p)} vs {Num(g)} → {Num(mra)} (float32, <)");
        }

        /// <summary>mean_relative_accuracy as the seed computes it, operation by operation in float32.</summary>
        internal static double Mra(double prediction, double groundTruth)
        {
            float p = (float)prediction, t = (float)groundTruth;
            float relativeError = MathF.Abs(p - t) / (MathF.Abs(t) + 1e-8f);
            int hits = Tolerances.Count(tol => relativeError < tol);
            return (float)hits / 10f;
        }
    }

    internal sealed class OfficialProfile : VsiBenchScoringProfile
    {
        /// <summary>1 - numpy.linspace(0.5, 0.95, 10) in double: θ_i = i·step + 0.5 with step = 0.45/9, the last one
        /// set to exactly 0.95 (so θ_8 = 0.8999999999999999, tolerance 0.10000000000000009).</summary>
        internal static readonly double[] Tolerances = BuildTolerances();

        static double[] BuildTolerances()
        {
            const int count = 10;
            double step = (0.95 - 0.5) / (count - 1);
            var tolerances = new double[count];
            for (int i = 0; i < count; i++) tolerances[i] = 1 - (i == count - 1 ? 0.95 : i * step + 0.5);
            return tolerances;
        }

        public override string Name => "official";

        /// <summary>fuzzy_matching: the text before the first U+0020, trailing dots stripped, then whitespace stripped.</summary>
        static string FirstToken(string prediction) =>
            PythonText.Strip(PythonText.RStrip(prediction.Split(' ')[0], '.'));

        private protected override (double, string) ScoreChoice(string prediction, string groundTruth)
        {
            string token = FirstToken(prediction);
            bool hit = token.ToLowerInvariant() == groundTruth.ToLowerInvariant();
            return (hit ? 1.0 : 0.0, $"first token {Quote(token)} {(hit ? "=" : "≠")} {Quote(groundTruth)}");
        }

        private protected override (double, string) ScoreNumber(string prediction, string groundTruth)
        {
            string token = FirstToken(prediction);
            if (!PythonText.TryParseFloat(token, out double p)) return (0.0, $"first token {Quote(token)} is not a number");
            PythonText.TryParseFloat(groundTruth, out double g);
            double mra = Mra(p, g);
            return (mra, $"{Num(p)} vs {Num(g)} → {Num(mra)} (double, ≤)");
        }

        /// <summary>abs(pred - gt) / gt (no abs on gt, no epsilon; the loader refuses gt = 0), a hit when ≤ 1 - θ.</summary>
        internal static double Mra(double prediction, double groundTruth)
        {
            double relativeError = Math.Abs(prediction - groundTruth) / groundTruth;
            return Tolerances.Count(tol => relativeError <= tol) / 10.0;
        }
    }
}
