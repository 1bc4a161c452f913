using System.Text;

namespace SpatialMllm.Research.Text;

/// <summary>
/// Byte-level BPE merges learned from texts, as Hugging Face's <c>BpeTrainer</c> learns them for a byte-level tokenizer:
/// each text split by Qwen2's pre-tokenizer, each piece's UTF-8 bytes written in GPT-2's byte alphabet, then repeatedly
/// the most frequent adjacent pair merged (ties: the ordinally first pair, so the result depends on the texts alone).
/// The merges, in order, are the ranks <see cref="Qwen2Tokenizer"/> applies. A small model's tokenizer learned on its
/// own data makes its prompts a few times shorter than bytes.
/// </summary>
public static class BytePairMerges
{
    /// <summary>GPT-2's <c>bytes_to_unicode</c>: the symbol of each byte (printable bytes stand for themselves, the
    /// others for 256 + n in byte order).</summary>
    public static IReadOnlyList<string> ByteSymbols { get; } = MakeByteSymbols();

    static string[] MakeByteSymbols()
    {
        static bool Printable(int b) => b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ';
        var symbols = new string[256];
        int n = 0;
        for (int b = 0; b < 256; b++) symbols[b] = ((char)(Printable(b) ? b : 256 + n++)).ToString();
        return symbols;
    }

    /// <summary>Up to <paramref name="count"/> merges, most useful first (fewer when no pair occurs twice).</summary>
    public static IReadOnlyList<(string Left, string Right)> Learn(IEnumerable<string> texts, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var preTokenizer = new Qwen2PreTokenizer([]);
        var frequencies = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string text in texts)
            foreach (var (offset, length) in preTokenizer.PreTokenize(text))
            {
                string piece = text.Substring(offset, length);
                frequencies[piece] = frequencies.GetValueOrDefault(piece) + 1;
            }
        var words = frequencies.Select(kv => (Symbols: Encoding.UTF8.GetBytes(kv.Key).Select(b => ByteSymbols[b]).ToList(), Count: kv.Value)).ToList();

        var merges = new List<(string, string)>();
        while (merges.Count < count)
        {
            var pairs = new Dictionary<(string, string), int>();
            foreach (var (symbols, n) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    pairs[(symbols[i], symbols[i + 1])] = pairs.GetValueOrDefault((symbols[i], symbols[i + 1])) + n;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value).ThenBy(p => p.Key.Item1, StringComparer.Ordinal)
                .ThenBy(p => p.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < 2) break;
            var (left, right) = best.Key;
            merges.Add((left, right));
            foreach (var (symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == left && symbols[i + 1] == right)
                    {
                        symbols[i] = left + right;
                        symbols.RemoveAt(i + 1);
                    }
        }
        return merges;
    }
}
