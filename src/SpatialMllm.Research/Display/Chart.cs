using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Display;

/// <summary>
/// A plotly.js figure (the bar, line and 3D point-cloud charts the notebooks need), written as JSON and rendered by
/// plotly.js in the notebook's HTML output.
/// </summary>
/// <remarks>
/// Why not Plotly.NET: Plotly.NET 6 needs FSharp.Core 10.1, but the notebook kernels (dotnet-interactive 1.0.712001
/// in VS Code and Jupyter, dotnet-repl 0.3.259 in CI) already load FSharp.Core 10.0, so the first chart throws there;
/// the figure JSON is small enough to write directly. plotly.js comes from <see cref="PlotlyScript"/> (the library's
/// own copy by default, so charts draw offline). Until the plot has drawn, the output shows a line saying why it has
/// not (scripts not run, plotly.js not loaded), so a chart is never just a blank area.
/// </remarks>
[TypeFormatterSource(typeof(HtmlFormatterSource), PreferredMimeTypes = ["text/html"])]
public sealed class Chart : IHtmlDisplay
{
    /// <summary>Colours for integer-valued point colours (plotly's Dark24), one legend entry per value.</summary>
    static readonly string[] DiscreteColours =
    [
        "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1",
        "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
    ];

    readonly JsonArray traces = [];
    readonly JsonObject layout = new() { ["margin"] = new JsonObject { ["t"] = 40, ["r"] = 20 } };
    int width = 720, height = 420;

    Chart() { }

    /// <summary>One bar per category.</summary>
    public static Chart Bar(IEnumerable<string> categories, IEnumerable<double> values, string? title = null) =>
        GroupedBar(categories, [("", values)]).WithTitle(title);

    /// <summary>One group per category, one bar (and legend entry) per series, e.g. VSI-Bench accuracy per task per model.
    /// The x axis is a category axis: labels are shown as given, in order.</summary>
    public static Chart GroupedBar(IEnumerable<string> categories, params (string Name, IEnumerable<double> Values)[] series)
    {
        var chart = new Chart();
        var x = Strings(categories);
        foreach (var (name, values) in series)
            chart.traces.Add(new JsonObject { ["type"] = "bar", ["name"] = name, ["x"] = x.DeepClone(), ["y"] = Numbers(values) });
        chart.layout["barmode"] = "group";
        // Categories stay categories even when they look like numbers ("4", "4 ✓"): plotly would otherwise guess a
        // numeric axis and silently drop the labels it cannot read as numbers.
        chart.Axis("xaxis")["type"] = "category";
        chart.layout["showlegend"] = series.Length > 1;
        return chart;
    }

    /// <summary>
    /// <see cref="GroupedBar"/> with an interval on every bar (e.g. a 95 % bootstrap interval), drawn as an error bar
    /// from Low to High around the bar's Value. A NaN value leaves a gap.
    /// </summary>
    public static Chart GroupedBarWithIntervals(IEnumerable<string> categories,
        params (string Name, IEnumerable<(double Value, double Low, double High)> Bars)[] series)
    {
        var chart = GroupedBar(categories, [.. series.Select(s => (s.Name, s.Bars.Select(b => b.Value)))]);
        foreach (var (trace, (_, bars)) in chart.traces.Zip(series))
            trace!["error_y"] = new JsonObject
            {
                ["type"] = "data", ["symmetric"] = false, ["visible"] = true,
                ["array"] = Numbers(bars.Select(b => b.High - b.Value)), ["arrayminus"] = Numbers(bars.Select(b => b.Value - b.Low)),
            };
        return chart;
    }

    /// <summary>
    /// Maps [H, W] (depth maps, errors) as heatmaps in a grid of <paramref name="columns"/>, each titled, row 0 at the top
    /// as in an image, on one shared colour scale (Viridis) from <paramref name="min"/> to <paramref name="max"/> (default:
    /// the finite values' range over all maps). Non-finite values are gaps.
    /// </summary>
    public static Chart Heatmaps(int columns, string colourTitle, IReadOnlyList<(string Title, Tensor Map)> panels, double? min = null, double? max = null)
    {
        if (panels.Count == 0 || columns < 1) throw new ArgumentException($"Give at least one map and one column (got {panels.Count} maps, {columns} columns).");
        var chart = new Chart();
        int rows = (panels.Count + columns - 1) / columns;
        double low = double.PositiveInfinity, high = double.NegativeInfinity;
        var annotations = new JsonArray();
        for (int i = 0; i < panels.Count; i++)
        {
            var (title, map) = panels[i];
            if (map.dim() != 2) throw new ArgumentException($"Map '{title}' must be [H, W], got [{string.Join(", ", map.shape)}].");
            float[] values;
            using (NewDisposeScope()) values = map.detach().cpu().to(ScalarType.Float32).contiguous().data<float>().ToArray();
            int width = (int)map.shape[1];
            foreach (float v in values.Where(float.IsFinite)) (low, high) = (Math.Min(low, v), Math.Max(high, v));
            string suffix = i == 0 ? "" : (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
            chart.traces.Add(new JsonObject
            {
                ["type"] = "heatmap", ["name"] = title, ["coloraxis"] = "coloraxis", ["xaxis"] = "x" + suffix, ["yaxis"] = "y" + suffix,
                ["z"] = new JsonArray([.. values.Chunk(width).Select(row => (JsonNode)Numbers(row.Select(v => (double)v)))]),
            });
            chart.Axis("xaxis" + suffix)["showticklabels"] = false;
            var y = chart.Axis("yaxis" + suffix);
            (y["autorange"], y["showticklabels"], y["scaleanchor"]) = ("reversed", false, "x" + suffix);
            annotations.Add(new JsonObject
            {
                ["text"] = title, ["showarrow"] = false, ["xref"] = $"x{suffix} domain", ["yref"] = $"y{suffix} domain",
                ["x"] = 0.5, ["y"] = 1, ["xanchor"] = "center", ["yanchor"] = "bottom",
            });
        }
        chart.layout["grid"] = new JsonObject { ["rows"] = rows, ["columns"] = columns, ["pattern"] = "independent" };
        chart.layout["coloraxis"] = new JsonObject
        {
            ["colorscale"] = "Viridis", ["cmin"] = min ?? (double.IsFinite(low) ? low : 0), ["cmax"] = max ?? (double.IsFinite(high) ? high : 1),
            ["colorbar"] = new JsonObject { ["title"] = new JsonObject { ["text"] = colourTitle } },
        };
        chart.layout["annotations"] = annotations;
        chart.layout["showlegend"] = false;
        (chart.width, chart.height) = (Math.Min(1100, 60 + 240 * columns), 60 + 200 * rows);
        return chart;
    }

    /// <summary>One line (with markers) per series over shared x values, e.g. voxel coverage against the number of frames.</summary>
    public static Chart Line(IEnumerable<double> x, params (string Name, IEnumerable<double> Y)[] series)
    {
        var chart = new Chart();
        var xs = Numbers(x);
        foreach (var (name, y) in series)
            chart.traces.Add(new JsonObject
            {
                ["type"] = "scatter", ["mode"] = "lines+markers", ["name"] = name, ["x"] = xs.DeepClone(), ["y"] = Numbers(y),
            });
        chart.layout["showlegend"] = series.Length > 1;
        return chart;
    }

    /// <summary>
    /// A 3D point cloud: <paramref name="points"/> <c>[..., 3]</c> (e.g. VGGT world points [T, H, W, 3]), coloured by
    /// <paramref name="colour"/> of the same leading shape (e.g. the frame index of each point). Non-finite points
    /// are dropped, then every k-th point is kept so that at most <paramref name="maxPoints"/> reach the browser.
    /// </summary>
    public static Chart PointCloud(Tensor points, Tensor? colour = null, string colourTitle = "frame", int maxPoints = 30_000)
    {
        if (points.shape[^1] != 3) throw new ArgumentException($"Expected points [..., 3], got [{string.Join(", ", points.shape)}].");
        if (colour is not null && colour.numel() * 3 != points.numel())
            throw new ArgumentException($"Colour values [{string.Join(", ", colour.shape)}] do not match points [{string.Join(", ", points.shape)}].");

        float[] xyz, values;
        using (NewDisposeScope())
        {
            var p = points.detach().cpu().to(ScalarType.Float32).reshape(-1, 3);
            var c = colour?.detach().cpu().to(ScalarType.Float32).reshape(-1);
            var keep = p.isfinite().all(1);
            p = p[keep];
            c = c?[keep];
            long stride = Math.Max(1, (p.shape[0] + maxPoints - 1) / maxPoints);
            p = p[TensorIndex.Slice(step: stride)].contiguous();
            c = c?[TensorIndex.Slice(step: stride)].contiguous();
            xyz = p.data<float>().ToArray();
            values = c?.data<float>().ToArray() ?? [];
        }

        var chart = new Chart();
        int count = xyz.Length / 3;
        var distinct = values.Distinct().Order().ToList();
        if (values.Length > 0 && distinct.Count <= DiscreteColours.Length && distinct.All(v => v == Math.Round(v)))
        {
            // Integer values (frame indices): one trace and legend entry per value, each its own colour.
            for (int k = 0; k < distinct.Count; k++)
            {
                var members = Enumerable.Range(0, count).Where(i => values[i] == distinct[k]).ToList();
                chart.traces.Add(Scatter3d(xyz, members, $"{colourTitle} {distinct[k]}",
                    new JsonObject { ["size"] = 2, ["color"] = DiscreteColours[k] }));
            }
            chart.layout["legend"] = new JsonObject { ["title"] = new JsonObject { ["text"] = colourTitle }, ["itemsizing"] = "constant" };
            chart.layout["showlegend"] = true;
        }
        else
        {
            var marker = new JsonObject { ["size"] = 2 };
            if (values.Length > 0)
            {
                marker["color"] = Numbers(values.Select(v => (double)v));
                marker["colorscale"] = "Viridis";
                marker["showscale"] = true;
                marker["colorbar"] = new JsonObject { ["title"] = new JsonObject { ["text"] = colourTitle } };
            }
            chart.traces.Add(Scatter3d(xyz, Enumerable.Range(0, count).ToList(), null, marker));
        }
        chart.layout["scene"] = new JsonObject { ["aspectmode"] = "data" };
        chart.height = 560;
        return chart;
    }

    static JsonObject Scatter3d(float[] xyz, IReadOnlyList<int> points, string? name, JsonObject marker)
    {
        var trace = new JsonObject
        {
            ["type"] = "scatter3d", ["mode"] = "markers",
            ["x"] = Numbers(points.Select(i => (double)xyz[3 * i])),
            ["y"] = Numbers(points.Select(i => (double)xyz[3 * i + 1])),
            ["z"] = Numbers(points.Select(i => (double)xyz[3 * i + 2])),
            ["marker"] = marker,
        };
        if (name != null) trace["name"] = name;
        return trace;
    }

    JsonObject Axis(string name)
    {
        if (layout[name] is not JsonObject axis) layout[name] = axis = new JsonObject();
        return axis;
    }

    public Chart WithTitle(string? title)
    {
        if (title != null) layout["title"] = new JsonObject { ["text"] = title };
        return this;
    }

    public Chart WithAxisTitles(string? x = null, string? y = null)
    {
        if (x != null) Axis("xaxis")["title"] = new JsonObject { ["text"] = x };
        if (y != null) Axis("yaxis")["title"] = new JsonObject { ["text"] = y };
        return this;
    }

    /// <summary>Size in CSS pixels.</summary>
    public Chart WithSize(int width, int height)
    {
        (this.width, this.height) = (width, height);
        return this;
    }

    /// <summary>The plotly.js figure: <c>{"data": [traces], "layout": {...}}</c>.</summary>
    public string ToJson() => new JsonObject { ["data"] = traces.DeepClone(), ["layout"] = layout.DeepClone() }.ToJsonString();

    /// <summary>The chart for a notebook output: plotly.js rides along with the first chart of the process (see <see cref="PlotlyScript"/>).</summary>
    public string ToHtml() =>
        ToHtml(PlotlyScript.Source, PlotlyScript.Source == PlotlySource.Embedded && PlotlyScript.TakeFirstEmbedding(), PlotlyScript.CdnUrl);

    internal string ToHtml(PlotlySource source, bool carryPlotly, string cdnUrl)
    {
        string id = "plotly-" + Guid.NewGuid().ToString("N");
        bool cdn = source == PlotlySource.Cdn;
        string load = cdn
            ? $$"""
                var url = '{{cdnUrl}}';
                var offline = function () { fail('plotly.js did not load from ' + url + ' (no internet access?). The library has its own copy: PlotlyScript.Source = PlotlySource.Embedded.'); };
                if (typeof requirejs === 'function' && typeof requirejs.config === 'function') {
                  requirejs.config({ context: 'spatial-mllm-plotly', paths: { plotly: url.replace(/\.js$/, '') } })(['plotly'], draw, offline);
                } else {
                  var script = document.createElement('script');
                  script.src = url;
                  script.onload = function () { draw(window.Plotly); };
                  script.onerror = offline;
                  document.head.appendChild(script);
                }
              """
            : """
                var waited = 0;
                (function poll() {
                  if (window.Plotly) { draw(window.Plotly); return; }
                  if ((waited += 100) > 10000) { fail('plotly.js is not on this page. The first chart a kernel shows carries it; if that output was cleared, run PlotlyScript.EmbedAgain() and this cell again.'); return; }
                  setTimeout(poll, 100);
                })();
              """;
        return $$"""
            <div id="{{id}}" style="width:{{width}}px;height:{{height}}px"></div>
            <div id="{{id}}-message" class="spatial-mllm-chart-message" style="font:12px monospace;color:#b00">Chart not drawn: its script did not run (an untrusted notebook, or a viewer without JavaScript).</div>
            {{(carryPlotly && !cdn ? PlotlyScript.InlineScriptElement() : "")}}
            <script type="text/javascript">
            (function () {
              var figure = {{ToJson()}};
              var message = document.getElementById('{{id}}-message');
              var fail = function (text) { message.textContent = 'Chart not drawn: ' + text; };
              var draw = function (Plotly) {
                Plotly.newPlot('{{id}}', figure.data, figure.layout, { responsive: true })
                  .then(function () { message.remove(); }, function (e) { fail('plotly.js could not draw it: ' + e); });
              };
              message.textContent = 'Loading plotly.js…';
            {{load}}
            })();
            </script>
            """;
    }

    /// <summary>Writes a standalone HTML page; it carries plotly.js (unless <see cref="PlotlyScript.Source"/> is the CDN), so it opens offline.</summary>
    public void SaveHtml(string path) => File.WriteAllText(path, HtmlPage.Wrap(ToHtml(PlotlyScript.Source, carryPlotly: true, PlotlyScript.CdnUrl)));

    public override string ToString() => ToJson();

    static JsonArray Strings(IEnumerable<string> values) => new(values.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray());

    /// <summary>Rounded to 5 significant digits (keeps point clouds small); NaN and ±Inf become null, which plotly.js draws as a gap.</summary>
    static JsonArray Numbers(IEnumerable<double> values) =>
        new(values.Select(v => double.IsFinite(v) ? (JsonNode?)JsonValue.Create(RoundSignificant(v)) : null).ToArray());

    static double RoundSignificant(double v)
    {
        if (v == 0) return 0;
        int decimals = Math.Clamp(4 - (int)Math.Floor(Math.Log10(Math.Abs(v))), 0, 15);
        return Math.Round(v, decimals);
    }
}
