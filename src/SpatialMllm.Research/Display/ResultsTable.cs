using System.Collections;
using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text;

namespace SpatialMllm.Research.Display;

/// <summary>Rows as an HTML table: records or anonymous objects (public properties and fields, in declaration order) or dictionaries (keys, in order of first appearance).</summary>
public static class ResultsTable
{
    /// <summary>
    /// One column per member or key. Numbers are right-aligned and rounded for reading (4 significant digits, no
    /// exponent between 1e-4 and 1e9); text shows what a model wrote: a line break as ⏎ and an empty string as a grey ∅,
    /// so an answer of only whitespace is not an empty-looking cell. Missing values (null) are blank.
    /// </summary>
    public static HtmlView From<T>(IEnumerable<T> rows, string? caption = null)
    {
        var cellsByRow = rows.Select(row => Cells(row)).ToList();
        var columns = cellsByRow.SelectMany(cells => cells.Select(c => c.Column)).Distinct().ToList();

        var html = new StringBuilder("<table style=\"border-collapse:collapse;font-size:12px\">");
        if (caption != null) html.Append($"<caption style=\"font-weight:bold;text-align:left\">{WebUtility.HtmlEncode(caption)}</caption>");
        html.Append("<thead><tr>");
        foreach (var column in columns) html.Append($"<th style=\"text-align:left;padding:2px 8px\">{WebUtility.HtmlEncode(column)}</th>");
        html.Append("</tr></thead><tbody>");
        foreach (var cells in cellsByRow)
        {
            var byColumn = cells.ToDictionary(c => c.Column, c => c.Value);
            html.Append("<tr>");
            foreach (var column in columns)
            {
                object? value = byColumn.GetValueOrDefault(column);
                string align = IsNumber(value) ? "right" : "left";
                html.Append($"<td style=\"text-align:{align};padding:2px 8px\">{Cell(value)}</td>");
            }
            html.Append("</tr>");
        }
        return new HtmlView(html.Append("</tbody></table>").ToString());
    }

    /// <summary>A 2-D array as a table: one row per first index, columns numbered by the second (e.g. a map over a patch grid).</summary>
    public static HtmlView FromGrid<T>(T[,] values, string? caption = null, string rowLabel = "row", string columnPrefix = "") =>
        From(Enumerable.Range(0, values.GetLength(0)).Select(r =>
        {
            var row = new List<KeyValuePair<string, object?>> { new(rowLabel, r) };
            for (int c = 0; c < values.GetLength(1); c++) row.Add(new(columnPrefix + c.ToString(CultureInfo.InvariantCulture), values[r, c]));
            return row;
        }), caption);

    static List<(string Column, object? Value)> Cells(object? row) => row switch
    {
        null => [],
        IEnumerable<KeyValuePair<string, object?>> pairs => pairs.Select(p => (p.Key, p.Value)).ToList(),
        IDictionary dictionary => dictionary.Cast<DictionaryEntry>().Select(e => (e.Key.ToString() ?? "", e.Value)).ToList(),
        _ => Members(row.GetType()).Select(m => (m.Name, m switch
        {
            PropertyInfo p => p.GetValue(row),
            FieldInfo f => f.GetValue(row),
            _ => null,
        })).ToList(),
    };

    /// <summary>Public readable instance properties and fields, in declaration order (the order records and anonymous types list them).</summary>
    static IEnumerable<MemberInfo> Members(Type type) =>
        type.GetMembers(BindingFlags.Public | BindingFlags.Instance)
            .Where(m => m is FieldInfo || m is PropertyInfo { CanRead: true } p && p.GetIndexParameters().Length == 0)
            .OrderBy(m => m.MetadataToken);

    static bool IsNumber(object? value) => value is sbyte or byte or short or ushort or int or uint or long or ulong or float or double or decimal;

    /// <summary>A cell's HTML: <see cref="Format"/>, encoded, with an empty string shown as a grey ∅.</summary>
    static string Cell(object? value) =>
        value is string { Length: 0 } ? "<span style=\"color:#999\" title=\"empty string\">∅</span>" : WebUtility.HtmlEncode(Format(value));

    /// <summary>A value as text for a table cell: line breaks visible (⏎), numbers rounded (see <see cref="From{T}"/>).</summary>
    internal static string Format(object? value) => value switch
    {
        null => "",
        string text => VisibleText(text),
        double d => FormatReal(d),
        float f => FormatReal(f),
        decimal m => m.ToString("0.####", CultureInfo.InvariantCulture),
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>Line breaks and tabs as visible marks (⏎, ⇥), so generated text reads as it was produced.</summary>
    internal static string VisibleText(string text) =>
        text.Replace("\r\n", "⏎").Replace('\n', '⏎').Replace('\r', '⏎').Replace('\t', '⇥');

    /// <summary>4 significant digits, at most 6 decimals, no exponent between 1e-4 and 1e9: 1523.74 → 1524, 0.012345 → 0.01235.</summary>
    internal static string FormatReal(double value)
    {
        if (!double.IsFinite(value)) return value.ToString(CultureInfo.InvariantCulture);
        double magnitude = Math.Abs(value);
        if (value != 0 && (magnitude < 1e-4 || magnitude >= 1e9)) return value.ToString("G4", CultureInfo.InvariantCulture);
        int decimals = value == 0 ? 0 : Math.Clamp(3 - (int)Math.Floor(Math.Log10(magnitude)), 0, 6);
        return Math.Round(value, decimals, MidpointRounding.AwayFromZero).ToString("0." + new string('#', Math.Max(decimals, 1)), CultureInfo.InvariantCulture);
    }
}
