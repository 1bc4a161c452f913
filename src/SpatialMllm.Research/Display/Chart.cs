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
/// in VS Code, dotnet-repl 0.3.259 in CI) already load FSharp.Core 10.0, so the first chart throws there; the figure
/// JSON is small enough to write directly. plotly.js itself comes from its CDN (the VS Code notebook view and a
/// browser need internet for charts; the rest of a notebook works offline). It is loaded through require.js, as
/// Plotly.NET.Interactive does: where an AMD loader is present (Jupyter), plotly.js registers as a module instead of
/// setting <c>window.Plotly</c>, so a plain script tag would not work everywhere.
/// </remarks>
[TypeFormatterSource(typeof(HtmlFormatterSource), PreferredMimeTypes = ["text/html"])]
public sealed class Chart : IHtmlDisplay
{
    const string PlotlyJs = "https://cdn.plot.ly/plotly-2.35.2.min";
    const string RequireJs = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js";

    readonly JsonArray traces = [];
    readonly JsonObject layout = new() { ["margin"] = new JsonObject { ["t"] = 40, ["r"] = 20 } };
    int width = 720, height = 420;

    Chart() { }

    /// <summary>One bar per category.</summary>
    public static Chart Bar(IEnumerable<string> categories, IEnumerable<double> values, string? title = null) =>
        GroupedBar(categories, [("", values)]).WithTitle(title);

    /// <summary>One group per category, one bar (and legend entry) per series, e.g. VSI-Bench accuracy per task per model.</summary>
    public static Chart GroupedBar(IEnumerable<string> categories, params (string Name, IEnumerable<double> Values)[] series)
    {
        var chart = new Chart();
        var x = Strings(categories);
        foreach (var (name, values) in series)
            chart.traces.Add(new JsonObject { ["type"] = "bar", ["name"] = name, ["x"] = x.DeepClone(), ["y"] = Numbers(values) });
        chart.layout["barmode"] = "group";
        chart.layout["showlegend"] = series.Length > 1;
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

        var marker = new JsonObject { ["size"] = 2 };
        if (values.Length > 0)
        {
            marker["color"] = Numbers(values.Select(v => (double)v));
            marker["colorscale"] = "Viridis";
            marker["showscale"] = true;
            marker["colorbar"] = new JsonObject { ["title"] = new JsonObject { ["text"] = colourTitle } };
        }
        var chart = new Chart();
        chart.traces.Add(new JsonObject
        {
            ["type"] = "scatter3d", ["mode"] = "markers",
            ["x"] = Numbers(Enumerable.Range(0, xyz.Length / 3).Select(i => (double)xyz[3 * i])),
            ["y"] = Numbers(Enumerable.Range(0, xyz.Length / 3).Select(i => (double)xyz[3 * i + 1])),
            ["z"] = Numbers(Enumerable.Range(0, xyz.Length / 3).Select(i => (double)xyz[3 * i + 2])),
            ["marker"] = marker,
        });
        chart.layout["scene"] = new JsonObject { ["aspectmode"] = "data" };
        chart.height = 560;
        return chart;
    }

    public Chart WithTitle(string? title)
    {
        if (title != null) layout["title"] = new JsonObject { ["text"] = title };
        return this;
    }

    public Chart WithAxisTitles(string? x = null, string? y = null)
    {
        if (x != null) layout["xaxis"] = new JsonObject { ["title"] = new JsonObject { ["text"] = x } };
        if (y != null) layout["yaxis"] = new JsonObject { ["title"] = new JsonObject { ["text"] = y } };
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

    public string ToHtml()
    {
        string id = "plotly-" + Guid.NewGuid().ToString("N");
        return $$"""
            <div id="{{id}}" style="width:{{width}}px;height:{{height}}px"></div>
            <script type="text/javascript">
            (function () {
              var figure = {{ToJson()}};
              var render = function () {
                var load = requirejs.config({ context: 'spatial-mllm-plotly', paths: { plotly: '{{PlotlyJs}}' } }) || require;
                load(['plotly'], function (Plotly) { Plotly.newPlot('{{id}}', figure.data, figure.layout, { responsive: true }); });
              };
              if (typeof requirejs === 'function' && typeof requirejs.config === 'function') { render(); return; }
              var script = document.createElement('script');
              script.src = '{{RequireJs}}';
              script.onload = render;
              document.head.appendChild(script);
            })();
            </script>
            """;
    }

    /// <summary>Writes a standalone HTML page (opens in a browser with internet access).</summary>
    public void SaveHtml(string path) => File.WriteAllText(path, HtmlPage.Wrap(ToHtml()));

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
