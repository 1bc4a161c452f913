using System.Buffers.Binary;
using System.Collections;
using System.IO.Compression;
using System.Text.Json;
using System.Text.RegularExpressions;
using SpatialMllm.Research.Display;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Display;

public class DisplayTests
{
    [Fact]
    public void Png_decodes_back_to_the_same_pixels()
    {
        const int width = 37, height = 23;
        var random = new Random(7);
        var rgb = new byte[width * height * 3];
        for (int i = 0; i < rgb.Length; i++)
            rgb[i] = i < rgb.Length / 2 ? (byte)(i / 3 % width * 5) : (byte)random.Next(256); // smooth half, noisy half

        var (decodedWidth, decodedHeight, pixels) = DecodePng(Png.EncodeRgb(rgb, width, height));

        Assert.Equal((width, height), (decodedWidth, decodedHeight));
        Assert.Equal(rgb, pixels);
    }

    [Fact]
    public void Frame_strip_scales_frames_down_and_captions_them()
    {
        using var frames = torch.randint(0, 256, [3, 3, 64, 80], dtype: ScalarType.Byte);

        string html = FrameStrip.FromTensor(frames, ["a", "b", "<c>"], height: 32).Html;

        var images = Regex.Matches(html, "base64,([A-Za-z0-9+/=]+)").Select(m => DecodePng(Convert.FromBase64String(m.Groups[1].Value))).ToList();
        Assert.Equal(3, images.Count);
        Assert.All(images, image => Assert.Equal((40, 32), (image.Width, image.Height)));
        Assert.Contains("&lt;c&gt;", html);
    }

    [Fact]
    public void Frame_strip_keeps_small_uint8_frames_exact()
    {
        using var frame = torch.randint(0, 256, [3, 8, 6], dtype: ScalarType.Byte);

        string html = FrameStrip.FromTensor(frame).Html;

        var image = DecodePng(Convert.FromBase64String(Regex.Match(html, "base64,([A-Za-z0-9+/=]+)").Groups[1].Value));
        Assert.Equal(frame.permute(1, 2, 0).contiguous().data<byte>().ToArray(), image.Pixels);
        Assert.Contains("frame 0", html);
    }

    [Fact]
    public void Results_table_takes_columns_from_records_and_dictionaries()
    {
        string fromRecords = ResultsTable.From(new[] { new Score("rel dir <&>", 0.12345678), new Score("route", 2) }).Html;
        string fromDictionaries = ResultsTable.From(new[]
        {
            new Dictionary<string, object?> { ["task"] = "count", ["uniform"] = 0.5 },
            new Dictionary<string, object?> { ["task"] = "size", ["space-aware"] = 0.25 },
        }).Html;

        Assert.Equal(["Task", "Accuracy"], Headers(fromRecords));
        Assert.Contains("rel dir &lt;&amp;&gt;", fromRecords);
        Assert.Contains(">0.1235<", fromRecords);
        Assert.Equal(["task", "uniform", "space-aware"], Headers(fromDictionaries));
        Assert.Equal(2, Regex.Matches(fromDictionaries, "<td[^>]*></td>").Count); // each row lacks one column
    }

    record Score(string Task, double Accuracy);

    [Fact]
    public void Tensor_summary_counts_nan_and_inf_apart_from_the_statistics()
    {
        using var t = torch.tensor(new float[] { 1, 2, 3, float.NaN, float.PositiveInfinity });

        var summary = TensorSummary.Of(t, "t");

        Assert.Equal(("[5]", "float32", 5L), (summary.Shape, summary.DType, summary.Elements));
        Assert.Equal((1.0, 3.0, 2.0, 1L, 1L), (summary.Min, summary.Max, summary.Mean, summary.NaNs, summary.Infinities));
        Assert.Null(TensorSummary.Of(torch.zeros(0, 3)).Mean);
    }

    [Fact]
    public void Results_table_shows_answers_visibly_and_rounds_numbers()
    {
        string html = ResultsTable.From(new[]
        {
            new { Answer = "two\nchairs", Ms = 1523.74, Score = 0.012346, Big = 3.2e10 },
            new { Answer = "", Ms = 12.3456, Score = 0.5, Big = 0.0 },
        }).Html;

        var cells = Regex.Matches(html, "<td[^>]*>(.*?)</td>").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal("two⏎chairs", cells[0]);
        Assert.Contains("∅", cells[4]);
        Assert.Equal(["1524", "0.01235", "3.2E+10", "12.35", "0.5", "0"], new[] { cells[1], cells[2], cells[3], cells[5], cells[6], cells[7] });
    }

    [Fact]
    public void Library_views_show_an_answer_as_generated_and_a_selection()
    {
        var answer = new SpatialMllm.Research.Models.Answer("3\n", [18, 198], 120, 64, [new("decode", 12.3456)],
            SpatialMllm.Research.Models.Qwen.GenerationStopReason.EndOfSequence);
        var selection = new SpatialMllm.Research.Sampling.FrameSelection("uniform(k=2)", 8, [0, 7], [0, 7], [0, 7]);

        string answerHtml = LibraryViews.For(answer)!.Html, selectionHtml = LibraryViews.For(selection)!.Html;

        Assert.Contains(">3⏎<", answerHtml);
        Assert.Contains(">18 198<", answerHtml);
        Assert.Contains(">12.35<", answerHtml);
        Assert.Contains(">0, 7<", selectionHtml);
        Assert.Null(LibraryViews.For("text"));
    }

    [Fact]
    public void Charts_write_plotly_figures()
    {
        var bars = Parse(Chart.GroupedBar(["a", "b"], ("x", [1.0, 2.0]), ("y", [3.0, double.NaN])).WithTitle("t"));
        Assert.Equal("group", bars.GetProperty("layout").GetProperty("barmode").GetString());
        Assert.Equal(2, bars.GetProperty("data").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, bars.GetProperty("data")[1].GetProperty("y")[1].ValueKind); // NaN → gap

        using var points = torch.randn(10, 100, 3);
        points[0, 0, 0] = torch.tensor(float.NaN);
        using var depth = points[.., .., 2].clone();
        var cloud = Parse(Chart.PointCloud(points, depth, maxPoints: 250)).GetProperty("data")[0];
        int count = cloud.GetProperty("x").GetArrayLength();
        Assert.InRange(count, 200, 250);
        Assert.Equal(count, cloud.GetProperty("marker").GetProperty("color").GetArrayLength());
        Assert.Contains("Plotly.newPlot", Chart.Line([1, 2], ("s", [3.0, 4.0])).ToHtml());

        // Integer colours (frame indices): one trace per value, each one colour, named in the legend.
        using var frame = torch.arange(10).view(10, 1).expand(10, 100);
        var byFrame = Parse(Chart.PointCloud(points, frame, maxPoints: 250)).GetProperty("data");
        Assert.Equal(10, byFrame.GetArrayLength());
        Assert.Equal("frame 3", byFrame[3].GetProperty("name").GetString());
        Assert.Equal(count, byFrame.EnumerateArray().Sum(t => t.GetProperty("x").GetArrayLength()));
        Assert.Equal(JsonValueKind.String, byFrame[3].GetProperty("marker").GetProperty("color").ValueKind);

        // Intervals: error bars from Low to High around each value, as plotly's asymmetric "data" error bars.
        var intervals = Parse(Chart.GroupedBarWithIntervals(["a", "b"], ("m", [(50.0, 40.0, 65.0), (double.NaN, double.NaN, double.NaN)]))).GetProperty("data")[0];
        var errorY = intervals.GetProperty("error_y");
        Assert.Equal((15.0, 10.0), (errorY.GetProperty("array")[0].GetDouble(), errorY.GetProperty("arrayminus")[0].GetDouble()));
        Assert.Equal(JsonValueKind.Null, errorY.GetProperty("array")[1].ValueKind);

        // Heatmaps: one trace per map on its own axes, rows top to bottom as given, one colour scale over all maps.
        using var map = torch.tensor(new float[] { 1, 2, float.NaN, 4, 5, 6 }).view(2, 3);
        var heat = Parse(Chart.Heatmaps(2, "m", [("one", map), ("two", map * 2), ("three", map * 3)]));
        var traces = heat.GetProperty("data");
        Assert.Equal(["x", "x2", "x3"], traces.EnumerateArray().Select(t => t.GetProperty("xaxis").GetString()));
        Assert.Equal([1.0, 2.0], traces[0].GetProperty("z")[0].EnumerateArray().Take(2).Select(v => v.GetDouble()));
        Assert.Equal(JsonValueKind.Null, traces[0].GetProperty("z")[0][2].ValueKind);
        Assert.Equal(4.0, traces[0].GetProperty("z")[1][0].GetDouble());
        var layout = heat.GetProperty("layout");
        Assert.Equal((2, 2), (layout.GetProperty("grid").GetProperty("rows").GetInt32(), layout.GetProperty("grid").GetProperty("columns").GetInt32()));
        Assert.Equal((1.0, 18.0), (layout.GetProperty("coloraxis").GetProperty("cmin").GetDouble(), layout.GetProperty("coloraxis").GetProperty("cmax").GetDouble()));
        Assert.Equal("reversed", layout.GetProperty("yaxis3").GetProperty("autorange").GetString());

        // Categorical bars keep a category axis, also after axis titles are set.
        var categories = Parse(Chart.Bar(["4", "4 ✓"], [1.0, 2.0]).WithAxisTitles(x: "frame", y: "voxels")).GetProperty("layout").GetProperty("xaxis");
        Assert.Equal(("category", "frame"), (categories.GetProperty("type").GetString(), categories.GetProperty("title").GetProperty("text").GetString()));
    }

    /// <summary>
    /// What the kernel does (dotnet/interactive Formatter.TryRegisterFromConventionBasedFormatterSources): find an
    /// attribute named TypeFormatterSourceAttribute, create its FormatterSourceType, call CreateTypeFormatters and
    /// use each result's MimeType and Format(object, TextWriter). Without this, notebooks would still show output
    /// (the kernel's default object view), so the notebook test alone would not notice.
    /// </summary>
    [Fact]
    public void Display_types_carry_the_kernels_convention_based_html_formatter()
    {
        using var t = torch.ones(2);
        object[] values = [new HtmlView("<b>x</b>"), TensorSummary.Of(t), Chart.Bar(["a"], [1.0])];
        foreach (var value in values)
        {
            var attribute = value.GetType().GetCustomAttributes(true).Single(a => a.GetType().Name == "TypeFormatterSourceAttribute");
            var sourceType = (Type)attribute.GetType().GetProperty("FormatterSourceType")!.GetValue(attribute)!;
            Assert.Equal(["text/html"], (string[])attribute.GetType().GetProperty("PreferredMimeTypes")!.GetValue(attribute)!);
            var source = Activator.CreateInstance(sourceType)!;
            var formatter = ((IEnumerable)sourceType.GetMethod("CreateTypeFormatters")!.Invoke(source, null)!).Cast<object>().Single();
            Assert.Equal("text/html", formatter.GetType().GetProperty("MimeType")!.GetValue(formatter));
            var writer = new StringWriter();
            Assert.True((bool)formatter.GetType().GetMethod("Format")!.Invoke(formatter, [value, writer])!);
            Assert.StartsWith("<", writer.ToString());
        }
    }

    static JsonElement Parse(Chart chart) => JsonDocument.Parse(chart.ToJson()).RootElement;

    static List<string> Headers(string html) => Regex.Matches(html, "<th[^>]*>([^<]*)</th>").Select(m => m.Groups[1].Value).ToList();

    /// <summary>Enough of a PNG reader for 8-bit RGB: IHDR size, inflated IDAT, rows unfiltered (all five filter types).</summary>
    static (int Width, int Height, byte[] Pixels) DecodePng(byte[] png)
    {
        int width = 0, height = 0;
        var idat = new MemoryStream();
        for (int at = 8; at < png.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(png, at + 4, 4);
            var data = png.AsSpan(at + 8, length);
            if (type == "IHDR")
            {
                (width, height) = (BinaryPrimitives.ReadInt32BigEndian(data), BinaryPrimitives.ReadInt32BigEndian(data[4..]));
                Assert.Equal([8, 2, 0, 0, 0], data[8..13].ToArray());
            }
            if (type == "IDAT") idat.Write(data);
            at += 12 + length;
        }
        idat.Position = 0;
        var raw = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress)) zlib.CopyTo(raw);
        var filtered = raw.ToArray();
        int stride = width * 3;
        var pixels = new byte[height * stride];
        for (int y = 0; y < height; y++)
        {
            byte filter = filtered[y * (stride + 1)];
            for (int i = 0; i < stride; i++)
            {
                int left = i >= 3 ? pixels[y * stride + i - 3] : 0;
                int up = y > 0 ? pixels[(y - 1) * stride + i] : 0;
                int upLeft = i >= 3 && y > 0 ? pixels[(y - 1) * stride + i - 3] : 0;
                int p = left + up - upLeft;
                int paeth = Math.Abs(p - left) <= Math.Abs(p - up) && Math.Abs(p - left) <= Math.Abs(p - upLeft) ? left
                    : Math.Abs(p - up) <= Math.Abs(p - upLeft) ? up : upLeft;
                int predicted = filter switch { 0 => 0, 1 => left, 2 => up, 3 => (left + up) / 2, 4 => paeth, _ => throw new InvalidDataException($"filter {filter}") };
                pixels[y * stride + i] = (byte)(filtered[y * (stride + 1) + 1 + i] + predicted);
            }
        }
        return (width, height, pixels);
    }
}
