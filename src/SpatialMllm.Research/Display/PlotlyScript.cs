using System.Formats.Tar;
using System.IO.Compression;

namespace SpatialMllm.Research.Display;

/// <summary>Where a chart gets plotly.js from.</summary>
public enum PlotlySource
{
    /// <summary>The copy inside this library (npm's plotly.js-dist-min): works offline, on a cluster node, in a saved page.</summary>
    Embedded,

    /// <summary>cdn.plot.ly: small outputs, but the viewer needs internet access.</summary>
    Cdn,
}

/// <summary>
/// plotly.js for <see cref="Chart"/>. By default the library's own copy (npm's <c>plotly.js-dist-min</c> package, kept
/// as npm serves it in <c>Resources/plotly</c>; <c>build/update-plotly.sh</c> replaces it) is written into the first
/// chart a process shows — about 4.5 MB once, like plotly.py's offline notebook mode — and later charts use it from the
/// page. <c>SPATIAL_MLLM_PLOTLY=cdn</c> or <see cref="Source"/> switches to the CDN.
/// </summary>
public static class PlotlyScript
{
    public const string Version = "2.35.3";

    /// <summary>The CDN address used with <see cref="PlotlySource.Cdn"/>.</summary>
    public static string CdnUrl => $"https://cdn.plot.ly/plotly-{Version}.min.js";

    /// <summary>Embedded unless the environment variable SPATIAL_MLLM_PLOTLY says "cdn".</summary>
    public static PlotlySource Source { get; set; } =
        string.Equals(Environment.GetEnvironmentVariable("SPATIAL_MLLM_PLOTLY"), "cdn", StringComparison.OrdinalIgnoreCase)
            ? PlotlySource.Cdn : PlotlySource.Embedded;

    static readonly Lazy<string> Script = new(ReadEmbedded);
    static int embeddedInPage;

    /// <summary>The plotly.js source (minified).</summary>
    public static string JavaScript => Script.Value;

    /// <summary>
    /// Makes the next chart carry plotly.js again: call it when the output that carried it was cleared and the page (the
    /// notebook view) was reloaded, so that later charts say "plotly.js is not on this page".
    /// </summary>
    public static void EmbedAgain() => Interlocked.Exchange(ref embeddedInPage, 0);

    /// <summary>True once per process (until <see cref="EmbedAgain"/>): the chart being written carries plotly.js.</summary>
    internal static bool TakeFirstEmbedding() => Interlocked.Exchange(ref embeddedInPage, 1) == 0;

    /// <summary>A script element that defines <c>window.Plotly</c>, also on pages with an AMD loader (Jupyter's require.js):
    /// plotly.js's UMD header would register an anonymous module there instead, which require.js rejects when inline.</summary>
    internal static string InlineScriptElement() =>
        "<script type=\"text/javascript\">(function () { var amd = window.define; window.define = undefined; try {\n"
        + JavaScript.Replace("</script", "<\\/script", StringComparison.OrdinalIgnoreCase)
        + "\n} finally { window.define = amd; } })();</script>";

    static string ReadEmbedded()
    {
        const string resource = "SpatialMllm.Research.Resources.plotly.tgz";
        using var stream = typeof(PlotlyScript).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"The library was built without its plotly.js resource ({resource}).");
        using var tar = new TarReader(new GZipStream(stream, CompressionMode.Decompress));
        while (tar.GetNextEntry() is { } entry)
            if (entry.Name == "package/plotly.min.js" && entry.DataStream is { } data)
                return new StreamReader(data).ReadToEnd();
        throw new InvalidOperationException($"{resource} has no package/plotly.min.js.");
    }
}
