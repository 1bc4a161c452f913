using System.Diagnostics;
using System.Text.RegularExpressions;
using SpatialMllm.Research.Display;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Display;

/// <summary>
/// Every chart kind drawn by plotly.js in headless Chromium (Debian's <c>chromium</c>, installed by
/// environment/prerequisites.sh), offline: the page carries the library's own plotly.js once and every later chart
/// uses it, as in a notebook. Checked on the DOM after drawing: the "not drawn" message is gone and the marks are there.
/// </summary>
public class ChartRenderingTests
{
    [Fact]
    public void Every_chart_kind_draws_offline_in_headless_chromium()
    {
        using var points = torch.randn(4, 50, 3, generator: torch.manual_seed(0));
        using var frames = torch.arange(4).view(4, 1).expand(4, 50);
        using var depth = points[.., .., 2].clone();
        Chart[] charts =
        [
            Chart.Bar(["0", "2", "4 ✓", "6 ✓", "8"], [5.0, 3.0, 7.0, 6.0, 1.0]).WithAxisTitles(x: "candidate frame", y: "voxels"),
            Chart.GroupedBar(["count", "route", "size"], ("a", [1.0, 2.0, 3.0]), ("b", [2.0, double.NaN, 1.0])),
            Chart.Line([1, 2, 3], ("s", [3.0, 4.0, 6.0]), ("t", [1.0, 1.5, 2.0])),
            Chart.PointCloud(points, frames, colourTitle: "frame"),
            Chart.PointCloud(points, depth, colourTitle: "depth"),
        ];
        string page = string.Concat(charts.Select((c, i) => c.ToHtml(PlotlySource.Embedded, carryPlotly: i == 0, PlotlyScript.CdnUrl)));

        string dom = RenderedDom(page);

        Assert.DoesNotContain("spatial-mllm-chart-message", dom);
        Assert.Equal(5, Regex.Matches(dom, "class=\"plot-container plotly\"").Count);
        // Bars: every category drawn, labels as given (a numeric axis would drop "4 ✓" and "6 ✓"), one bar each.
        var ticks = Regex.Matches(dom, "<g class=\"xtick\"><text[^>]*data-unformatted=\"([^\"]*)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["0", "2", "4 ✓", "6 ✓", "8", "count", "route", "size"], ticks.Take(8));
        // A bar's outline is M x,base V top H x2 V base Z; the NaN bar has top = base.
        var bars = Regex.Matches(dom, "<g class=\"point\"><path d=\"M[^,]+,([^V]+)V([^H]+)H").Select(m => m.Groups[1].Value != m.Groups[2].Value).ToList();
        Assert.Equal(5 + 6, bars.Count);
        Assert.Equal(5 + 5, bars.Count(drawn => drawn));
        Assert.Equal(2 * 3, Regex.Matches(dom, "<path class=\"point\"").Count); // line markers
        Assert.Equal(2, Regex.Matches(dom, "class=\"js-line\"[^>]*d=\"M[^\"]*L").Count); // the two series (legend samples are M…h…)
        // Point clouds: WebGL canvases; integer frames as a legend of four colours, the float depth as a colour bar.
        Assert.True(Regex.Matches(dom, "<canvas").Count >= 2);
        foreach (int frame in new[] { 0, 1, 2, 3 }) Assert.Contains($"data-unformatted=\"frame {frame}\"", dom);
        Assert.Matches("class=\"[^\"]*colorbar\"", dom);
    }

    [Fact]
    public void Interval_bars_and_heatmap_grids_draw_offline_in_headless_chromium()
    {
        using var depth = torch.arange(12, dtype: ScalarType.Float32).view(3, 4);
        Chart[] charts =
        [
            Chart.GroupedBarWithIntervals(["count", "size"], ("model", [(50.0, 40.0, 60.0), (30.0, 25.0, 35.0)]), ("baseline", [(45.0, 44.0, 46.0), (double.NaN, double.NaN, double.NaN)])),
            Chart.Heatmaps(2, "metres", [("truth", depth), ("VGGT", depth.flip(1)), ("error", depth / 11)]),
        ];
        string page = string.Concat(charts.Select((c, i) => c.ToHtml(PlotlySource.Embedded, carryPlotly: i == 0, PlotlyScript.CdnUrl)));

        string dom = RenderedDom(page);

        Assert.DoesNotContain("spatial-mllm-chart-message", dom);
        Assert.Equal(2, Regex.Matches(dom, "class=\"plot-container plotly\"").Count);
        Assert.Equal(3, Regex.Matches(dom, "<path class=\"yerror\"").Count);    // the NaN bar has none
        Assert.Equal(3, Regex.Matches(dom, "<g class=\"hm\"><image").Count);  // one picture per map
        foreach (string title in new[] { "truth", "VGGT", "error" }) Assert.Contains($"data-unformatted=\"{title}\"", dom);
        Assert.Matches("class=\"[^\"]*colorbar\"", dom);
    }

    [Fact]
    public void A_chart_whose_plotly_cannot_load_says_so()
    {
        string dom = RenderedDom(Chart.Bar(["a"], [1.0]).ToHtml(PlotlySource.Cdn, carryPlotly: false, "file:///nonexistent/plotly.min.js"));

        Assert.Matches("Chart not drawn: plotly.js did not load from file:///nonexistent/plotly.min.js", dom);
    }

    static string RenderedDom(string body)
    {
        string page = Path.Combine(TestPaths.NewTempDir("chart"), "page.html");
        File.WriteAllText(page, HtmlPage.Wrap(body));
        return RenderedDomOf(page);
    }

    /// <summary>The page's DOM after its scripts ran (virtual time, so plotly's timers finish), script elements removed.</summary>
    internal static string RenderedDomOf(string page)
    {
        string dir = TestPaths.NewTempDir("chromium");
        var start = new ProcessStartInfo(Chromium())
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            ArgumentList =
            {
                "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--user-data-dir=" + Path.Combine(dir, "profile"),
                "--window-size=1200,900", "--virtual-time-budget=20000", "--dump-dom", new Uri(page).AbsoluteUri,
            },
        };
        using var chromium = Process.Start(start)!;
        var stderr = chromium.StandardError.ReadToEndAsync();
        string dom = chromium.StandardOutput.ReadToEnd();
        Assert.True(chromium.WaitForExit(120_000), "chromium did not finish within 2 minutes");
        Assert.True(chromium.ExitCode == 0 && dom.Length > 0, $"chromium exited with {chromium.ExitCode}: {stderr.Result}");
        return Regex.Replace(dom, "<script.*?</script>", "", RegexOptions.Singleline);
    }

    static string Chromium() =>
        new[] { Environment.GetEnvironmentVariable("CHROMIUM") ?? "", "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("Chromium not found: run environment/prerequisites.sh (it installs Debian's chromium) or set $CHROMIUM.");
}
