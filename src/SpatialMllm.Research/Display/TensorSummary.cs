using System.Globalization;
using System.Net;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Display;

/// <summary>
/// What one looks at first when debugging a tensor: shape, dtype, device and value statistics (NaN and ±Inf counted
/// apart, so one NaN does not hide the range). A record, so a list of summaries also renders with <see cref="ResultsTable"/>.
/// </summary>
[TypeFormatterSource(typeof(HtmlFormatterSource), PreferredMimeTypes = ["text/html"])]
public sealed record TensorSummary(
    string Name, string Shape, string DType, string Device, long Elements,
    double? Min, double? Max, double? Mean, double? Std, long NaNs, long Infinities) : IHtmlDisplay
{
    /// <summary>Summarises <paramref name="tensor"/>; statistics are computed in float64 over the finite values.</summary>
    public static TensorSummary Of(Tensor tensor, string name = "")
    {
        string shape = "[" + string.Join(", ", tensor.shape) + "]";
        string dtype = tensor.dtype.ToString().ToLowerInvariant();
        string device = tensor.device.ToString();
        long count = tensor.numel();
        if (count == 0) return new(name, shape, dtype, device, 0, null, null, null, null, 0, 0);

        using var scope = NewDisposeScope();
        var values = tensor.detach().to(ScalarType.Float64).flatten();
        long nans = values.isnan().sum().item<long>();
        long infinities = values.isinf().sum().item<long>();
        var finite = values.masked_select(values.isfinite());
        if (finite.numel() == 0) return new(name, shape, dtype, device, count, null, null, null, null, nans, infinities);
        double? std = finite.numel() > 1 ? finite.std().item<double>() : null;
        return new(name, shape, dtype, device, count,
            finite.min().item<double>(), finite.max().item<double>(), finite.mean().item<double>(), std, nans, infinities);
    }

    public string ToHtml()
    {
        var cells = new (string Label, string Value)[]
        {
            ("shape", Shape), ("dtype", DType), ("device", Device), ("elements", Elements.ToString("N0", CultureInfo.InvariantCulture)),
            ("min", Number(Min)), ("max", Number(Max)), ("mean", Number(Mean)), ("std", Number(Std)),
            ("NaN", NaNs.ToString(CultureInfo.InvariantCulture)), ("±Inf", Infinities.ToString(CultureInfo.InvariantCulture)),
        };
        string title = Name.Length > 0 ? $"<b>{WebUtility.HtmlEncode(Name)}</b> " : "";
        string warning = NaNs + Infinities > 0 ? " style=\"color:#b00\"" : "";
        return $"<div style=\"font-family:monospace\">{title}<table{warning}><tr>"
            + string.Concat(cells.Select(c => $"<th>{c.Label}</th>")) + "</tr><tr>"
            + string.Concat(cells.Select(c => $"<td>{WebUtility.HtmlEncode(c.Value)}</td>")) + "</tr></table></div>";
    }

    public override string ToString() =>
        $"{(Name.Length > 0 ? Name + " " : "")}{Shape} {DType} {Device} min={Number(Min)} max={Number(Max)} mean={Number(Mean)} std={Number(Std)}"
        + (NaNs + Infinities > 0 ? $" NaN={NaNs} Inf={Infinities}" : "");

    static string Number(double? value) => value?.ToString("G5", CultureInfo.InvariantCulture) ?? "–";
}
