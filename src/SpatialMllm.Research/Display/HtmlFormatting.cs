namespace SpatialMllm.Research.Display;

/// <summary>Something a notebook shows as HTML.</summary>
internal interface IHtmlDisplay
{
    string ToHtml();
}

/// <summary>
/// .NET Interactive's convention-based formatter discovery: when the kernel first formats an instance of a type, it
/// looks for an attribute whose type is <em>named</em> TypeFormatterSourceAttribute and reads
/// <see cref="FormatterSourceType"/> and <see cref="PreferredMimeTypes"/> by reflection. Declaring our own copy
/// makes every display type render as HTML in any kernel version with no registration cell, while the library
/// (and so the CLI) carries no reference to Microsoft.DotNet.Interactive.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
internal sealed class TypeFormatterSourceAttribute(Type formatterSourceType) : Attribute
{
    public Type FormatterSourceType { get; } = formatterSourceType;
    public string[]? PreferredMimeTypes { get; set; }
}

/// <summary>The formatter source the kernel instantiates (by convention: a public CreateTypeFormatters method).</summary>
internal sealed class HtmlFormatterSource
{
    public IEnumerable<object> CreateTypeFormatters() => [new HtmlFormatter()];

    /// <summary>By convention: a MimeType property and a bool Format(object, TextWriter) method.</summary>
    public sealed class HtmlFormatter
    {
        public string MimeType => "text/html";

        public bool Format(object instance, TextWriter writer)
        {
            if (instance is not IHtmlDisplay display) return false;
            writer.Write(display.ToHtml());
            return true;
        }
    }
}

/// <summary>A piece of HTML that a notebook cell displays as HTML (e.g. a frame strip or a results table).</summary>
[TypeFormatterSource(typeof(HtmlFormatterSource), PreferredMimeTypes = ["text/html"])]
public sealed record HtmlView(string Html) : IHtmlDisplay
{
    public string ToHtml() => Html;

    public override string ToString() => Html;

    /// <summary>Writes a standalone HTML page (for reports outside a notebook).</summary>
    public void SaveHtml(string path) => File.WriteAllText(path, HtmlPage.Wrap(Html));
}

internal static class HtmlPage
{
    public static string Wrap(string body) =>
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n" + body + "\n</body></html>\n";
}
