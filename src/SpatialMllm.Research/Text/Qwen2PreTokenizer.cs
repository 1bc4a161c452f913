using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SpatialMllm.Research.Text;

/// <summary>
/// Qwen2's pre-tokenizer: added tokens are cut out whole (never split, leftmost then longest match),
/// and the text between them is split with the Qwen2 regex (cl100k-style, single digits).
/// </summary>
/// <remarks>
/// Why not <see cref="RegexPreTokenizer"/>: the Hugging Face regex runs on Unicode code points, .NET's
/// on UTF-16 units. A character outside the BMP is two surrogates of category Cs for .NET, so
/// <c>\p{L}</c> misses astral letters and <c>[^\r\n\p{L}\p{N}]?\p{L}+</c> cannot take an emoji as
/// its one leading character ("🚀abc" would split in two instead of staying one piece). This class
/// runs the same regex on a stand-in string in which every astral code point is one BMP character
/// of the same regex class, then maps the matches back to the original offsets.
/// </remarks>
internal sealed class Qwen2PreTokenizer : PreTokenizer
{
    /// <summary>The split pattern of Qwen2's tokenizer.json (Split, behavior Isolated).</summary>
    internal const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // Stand-ins for an astral code point, one per regex class the pattern distinguishes.
    // 'a' is a letter that no contraction alternative ('s 't 're 've 'm 'll 'd) can consume.
    const char AstralLetter = 'a';
    const char AstralNumber = '0';
    const char AstralOther = '\u00A7'; // '§', category Po: not a letter, digit, space or line break

    static readonly Regex SplitRegex = new(Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    readonly Regex? _addedTokenRegex;

    /// <param name="addedTokens">Tokens matched whole before the regex runs.</param>
    public Qwen2PreTokenizer(IEnumerable<string> addedTokens)
    {
        // Longest first, so that with two tokens starting at one place the longer wins (as HF's
        // leftmost-longest matcher does); .NET alternation takes the first alternative that matches.
        var alternatives = addedTokens.Where(t => t.Length > 0).Distinct()
            .OrderByDescending(t => t.Length).ThenBy(t => t, StringComparer.Ordinal)
            .Select(Regex.Escape).ToArray();
        if (alternatives.Length > 0)
            _addedTokenRegex = new Regex(string.Join("|", alternatives), RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
        text is null ? [] : Split(text);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) =>
        text.IsEmpty ? [] : Split(text.ToString());

    List<(int Offset, int Length)> Split(string text)
    {
        var pieces = new List<(int, int)>();
        int start = 0;
        if (_addedTokenRegex is not null)
        {
            for (var m = _addedTokenRegex.Match(text); m.Success; m = m.NextMatch())
            {
                SplitPlainText(text, start, m.Index - start, pieces);
                pieces.Add((m.Index, m.Length));
                start = m.Index + m.Length;
            }
        }
        SplitPlainText(text, start, text.Length - start, pieces);
        return pieces;
    }

    static void SplitPlainText(string text, int offset, int length, List<(int, int)> pieces)
    {
        if (length == 0) return;
        string segment = text.Substring(offset, length);
        if (!HasSurrogates(segment))
        {
            for (var m = SplitRegex.Match(segment); m.Success; m = m.NextMatch())
                pieces.Add((offset + m.Index, m.Length));
            return;
        }

        // standIn[i] stands for the code point that starts at segment[originalIndex[i]].
        var standIn = new StringBuilder(segment.Length);
        var originalIndex = new List<int>(segment.Length + 1);
        for (int i = 0; i < segment.Length; i++)
        {
            originalIndex.Add(i);
            if (char.IsHighSurrogate(segment[i]) && i + 1 < segment.Length && char.IsLowSurrogate(segment[i + 1]))
            {
                standIn.Append(StandInFor(char.ConvertToUtf32(segment[i], segment[i + 1])));
                i++;
            }
            else standIn.Append(segment[i]);
        }
        originalIndex.Add(segment.Length);

        for (var m = SplitRegex.Match(standIn.ToString()); m.Success; m = m.NextMatch())
        {
            int begin = originalIndex[m.Index], end = originalIndex[m.Index + m.Length];
            pieces.Add((offset + begin, end - begin));
        }
    }

    static char StandInFor(int codePoint) => CharUnicodeInfo.GetUnicodeCategory(codePoint) switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => AstralLetter,
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => AstralNumber,
        _ => AstralOther, // no astral code point is white space
    };

    static bool HasSurrogates(string s)
    {
        foreach (char c in s)
            if (char.IsSurrogate(c)) return true;
        return false;
    }
}
