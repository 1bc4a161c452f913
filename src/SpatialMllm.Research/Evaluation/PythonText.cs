using System.Globalization;
using System.Text;

namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// The few Python string semantics the reference scorers rely on, reproduced exactly: str.isspace / str.strip()
/// (and re's \s, which is the same predicate), and float() parsing.
/// </summary>
internal static class PythonText
{
    /// <summary>Python's str.isspace for one character: .NET's white space plus the four ASCII separators
    /// U+001C..U+001F, which Python counts as whitespace and .NET does not.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || (c >= '\u001c' && c <= '\u001f');

    /// <summary>str.strip() with no argument.</summary>
    public static string Strip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsSpace(s[start])) start++;
        while (end > start && IsSpace(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary>str.rstrip(chars) for a single character.</summary>
    public static string RStrip(string s, char c)
    {
        int end = s.Length;
        while (end > 0 && s[end - 1] == c) end--;
        return s[..end];
    }

    /// <summary>str.split() with no argument: runs of whitespace separate, no empty pieces.</summary>
    public static string[] SplitWhitespace(string s)
    {
        var pieces = new List<string>();
        int start = -1;
        for (int i = 0; i <= s.Length; i++)
        {
            bool space = i == s.Length || IsSpace(s[i]);
            if (space && start >= 0) { pieces.Add(s[start..i]); start = -1; }
            else if (!space && start < 0) start = i;
        }
        return [.. pieces];
    }

    /// <summary>re.sub(r"\s+", " ", s).</summary>
    public static string CollapseWhitespace(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool inRun = false;
        foreach (char c in s)
        {
            if (IsSpace(c)) { if (!inRun) sb.Append(' '); inRun = true; }
            else { sb.Append(c); inRun = false; }
        }
        return sb.ToString();
    }

    /// <summary>
    /// Python's float(s): surrounding whitespace, an optional sign, "inf"/"infinity"/"nan" in any case, digits
    /// with single underscores between them, an optional fraction and exponent; Unicode decimal digits count.
    /// Returns false where Python raises ValueError.
    /// </summary>
    public static bool TryParseFloat(string s, out double value)
    {
        value = double.NaN;
        var sb = new StringBuilder(s.Length);
        foreach (char c in Strip(s))
        {
            // Python maps any Unicode decimal digit to its ASCII value before parsing.
            if (c > '\u007f' && CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.DecimalDigitNumber)
                sb.Append((char)('0' + CharUnicodeInfo.GetDecimalDigitValue(c)));
            else sb.Append(c);
        }
        string t = sb.ToString();
        int i = 0;
        bool negative = false;
        if (i < t.Length && (t[i] == '+' || t[i] == '-')) { negative = t[i] == '-'; i++; }
        string rest = t[i..].ToLowerInvariant();
        if (rest is "inf" or "infinity") { value = negative ? double.NegativeInfinity : double.PositiveInfinity; return true; }
        if (rest is "nan") { value = double.NaN; return true; }

        var digits = new StringBuilder(t.Length);
        bool anyMantissaDigit = false;
        if (!ReadDigitPart(t, ref i, digits, out bool intDigits)) return false;
        anyMantissaDigit |= intDigits;
        if (i < t.Length && t[i] == '.')
        {
            digits.Append('.');
            i++;
            if (!ReadDigitPart(t, ref i, digits, out bool fracDigits)) return false;
            anyMantissaDigit |= fracDigits;
        }
        if (!anyMantissaDigit) return false;
        if (i < t.Length && (t[i] == 'e' || t[i] == 'E'))
        {
            digits.Append('e');
            i++;
            if (i < t.Length && (t[i] == '+' || t[i] == '-')) digits.Append(t[i++]);
            if (!ReadDigitPart(t, ref i, digits, out bool expDigits) || !expDigits) return false;
        }
        if (i != t.Length) return false;
        // .NET Core 3.0+ parsing is correctly rounded (as CPython's is) and overflows to ±Infinity as Python does.
        value = double.Parse(digits.ToString(), NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture);
        if (negative) value = -value;
        return true;
    }

    /// <summary>digit (["_"] digit)*, or nothing. False when an underscore is not between two digits.</summary>
    static bool ReadDigitPart(string t, ref int i, StringBuilder into, out bool any)
    {
        any = false;
        while (i < t.Length)
        {
            if (char.IsAsciiDigit(t[i])) { into.Append(t[i++]); any = true; }
            else if (t[i] == '_' && any && i + 1 < t.Length && char.IsAsciiDigit(t[i + 1])) i++;
            else break;
        }
        return !(i < t.Length && t[i] == '_');
    }
}
