namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// BLEU-1..4, ROUGE-L and CIDEr-D as the coco-caption scorers bundled with the seed compute them (spec §6.3–6.6), on
/// untokenised text: BLEU and CIDEr split on whitespace runs (Python split()), ROUGE-L on single spaces (split(" ")).
/// All sums run in input order, in double, so results match the Python code up to its own summation order.
/// </summary>
internal static class CaptionMetrics
{
    /// <summary>One hypothesis and its references.</summary>
    public sealed record Sample(string Hypothesis, IReadOnlyList<string> References);

    const int MaxN = 4;

    /// <summary>n-gram counts for n = 1..4; an n-gram is its words joined by U+0001, which no word contains.</summary>
    static Dictionary<string, int>[] NGramCounts(string[] words)
    {
        var counts = new Dictionary<string, int>[MaxN];
        for (int n = 1; n <= MaxN; n++)
        {
            counts[n - 1] = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i + n <= words.Length; i++)
            {
                string gram = string.Join('\u0001', words, i, n);
                counts[n - 1][gram] = counts[n - 1].GetValueOrDefault(gram) + 1;
            }
        }
        return counts;
    }

    /// <summary>Corpus BLEU-1..4 (BleuScorer, option "closest"): clipped counts and lengths summed over samples,
    /// the 1e-15/1e-9 smoothing, one brevity penalty for the corpus.</summary>
    public static double[] Bleu(IReadOnlyList<Sample> samples)
    {
        const double tiny = 1e-15, small = 1e-9;
        var guess = new double[MaxN];
        var correct = new double[MaxN];
        double testLength = 0, refLength = 0;
        foreach (var sample in samples)
        {
            string[] words = PythonText.SplitWhitespace(sample.Hypothesis);
            var maxRefCounts = new Dictionary<string, int>[MaxN];
            for (int n = 0; n < MaxN; n++) maxRefCounts[n] = new Dictionary<string, int>(StringComparer.Ordinal);
            // "closest": the reference length nearest the hypothesis length, ties to the shorter (min over (|diff|, len)).
            (int Diff, int Length) closest = (int.MaxValue, int.MaxValue);
            foreach (string reference in sample.References)
            {
                string[] refWords = PythonText.SplitWhitespace(reference);
                var candidate = (Math.Abs(refWords.Length - words.Length), refWords.Length);
                if (candidate.CompareTo(closest) < 0) closest = candidate;
                var refCounts = NGramCounts(refWords);
                for (int n = 0; n < MaxN; n++)
                    foreach (var (gram, count) in refCounts[n])
                        maxRefCounts[n][gram] = Math.Max(maxRefCounts[n].GetValueOrDefault(gram), count);
            }
            testLength += words.Length;
            refLength += closest.Length;
            var counts = NGramCounts(words);
            for (int n = 0; n < MaxN; n++)
            {
                guess[n] += Math.Max(0, words.Length - n);
                foreach (var (gram, count) in counts[n]) correct[n] += Math.Min(maxRefCounts[n].GetValueOrDefault(gram), count);
            }
        }
        double ratio = (testLength + tiny) / (refLength + small);
        var bleu = new double[MaxN];
        for (int n = 1; n <= MaxN; n++)
        {
            double product = 1.0;
            for (int k = 0; k < n; k++) product *= (correct[k] + tiny) / (guess[k] + small);
            bleu[n - 1] = Math.Pow(product, 1.0 / n);
            if (ratio < 1) bleu[n - 1] *= Math.Exp(1 - 1 / ratio);
        }
        return bleu;
    }

    /// <summary>ROUGE-L per sample (β = 1.2; best precision and best recall taken over references independently),
    /// and their mean.</summary>
    public static (double Mean, double[] PerSample) RougeL(IReadOnlyList<Sample> samples)
    {
        const double beta = 1.2;
        var scores = new double[samples.Count];
        for (int s = 0; s < samples.Count; s++)
        {
            string[] candidate = samples[s].Hypothesis.Split(' ');
            double bestPrecision = 0, bestRecall = 0;
            foreach (string reference in samples[s].References)
            {
                string[] refTokens = reference.Split(' ');
                int lcs = LongestCommonSubsequence(refTokens, candidate);
                bestPrecision = Math.Max(bestPrecision, lcs / (double)candidate.Length);
                bestRecall = Math.Max(bestRecall, lcs / (double)refTokens.Length);
            }
            scores[s] = bestPrecision != 0 && bestRecall != 0
                ? (1 + beta * beta) * bestPrecision * bestRecall / (bestRecall + beta * beta * bestPrecision)
                : 0.0;
        }
        return (scores.Length == 0 ? 0 : scores.Sum() / scores.Length, scores);
    }

    static int LongestCommonSubsequence(string[] a, string[] b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        foreach (string x in a)
        {
            for (int j = 1; j <= b.Length; j++)
                current[j] = x == b[j - 1] ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }

    /// <summary>CIDEr-D per sample and mean, document frequencies over the samples' reference sets (<see cref="CiderD"/>).</summary>
    public static (double Mean, double[] PerSample) Cider(IReadOnlyList<Sample> samples)
    {
        var cider = new CiderD(samples.Select(s => s.References));
        var scores = samples.Select(s => cider.Score(s.Hypothesis, s.References)).ToArray();
        return (scores.Length == 0 ? 0 : scores.Sum() / scores.Length, scores);
    }

    /// <summary>
    /// CIDEr-D with its document frequencies fixed by a corpus of reference sets: df counts the sets an n-gram occurs in,
    /// idf = ln N − ln max(1, df) (N: the sets); raw-count tf, cosine with clipping, Gaussian length penalty (σ = 6) on the
    /// bigram count, mean over n and references, ×10. The coco scorer takes the corpus to be the samples it scores; a
    /// GRPO reward scores one completion at a time against the training questions' corpus.
    /// </summary>
    public sealed class CiderD
    {
        const double Sigma = 6.0;
        readonly Dictionary<string, int> _documentFrequency = new(StringComparer.Ordinal);
        readonly double _logCorpusSize;

        public CiderD(IEnumerable<IReadOnlyList<string>> referenceSets)
        {
            int sets = 0;
            foreach (var references in referenceSets)
            {
                sets++;
                foreach (string gram in references.SelectMany(r => NGramCounts(PythonText.SplitWhitespace(r)).SelectMany(byN => byN.Keys)).Distinct())
                    _documentFrequency[gram] = _documentFrequency.GetValueOrDefault(gram) + 1;
            }
            _logCorpusSize = Math.Log(sets);
        }

        /// <summary>The hypothesis' CIDEr-D against its references.</summary>
        public double Score(string hypothesis, IReadOnlyList<string> references)
        {
            var hyp = ToVector(NGramCounts(PythonText.SplitWhitespace(hypothesis)));
            var sum = new double[MaxN];
            foreach (string referenceText in references)
            {
                var reference = ToVector(NGramCounts(PythonText.SplitWhitespace(referenceText)));
                double delta = hyp.Length - reference.Length;
                for (int n = 0; n < MaxN; n++)
                {
                    double value = 0;
                    foreach (var (gram, weight) in hyp.Vector[n])
                        value += Math.Min(weight, reference.Vector[n].GetValueOrDefault(gram)) * reference.Vector[n].GetValueOrDefault(gram);
                    if (hyp.Norm[n] != 0 && reference.Norm[n] != 0) value /= hyp.Norm[n] * reference.Norm[n];
                    value *= Math.Pow(Math.E, -(delta * delta) / (2 * Sigma * Sigma));
                    sum[n] += value;
                }
            }
            return sum.Average() / references.Count * 10.0;
        }

        (Dictionary<string, double>[] Vector, double[] Norm, int Length) ToVector(Dictionary<string, int>[] counts)
        {
            var vector = new Dictionary<string, double>[MaxN];
            var norm = new double[MaxN];
            int length = 0;
            for (int n = 0; n < MaxN; n++)
            {
                vector[n] = new Dictionary<string, double>(StringComparer.Ordinal);
                foreach (var (gram, tf) in counts[n])
                {
                    double weight = tf * (_logCorpusSize - Math.Log(Math.Max(1.0, _documentFrequency.GetValueOrDefault(gram))));
                    vector[n][gram] = weight;
                    norm[n] += weight * weight;
                    // The reference code's "length" tests the zero-based n-gram index against 1: it counts bigrams.
                    if (n == 1) length += tf;
                }
                norm[n] = Math.Sqrt(norm[n]);
            }
            return (vector, norm, length);
        }
    }
}
