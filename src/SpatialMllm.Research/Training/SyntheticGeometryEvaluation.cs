using System.Globalization;
using System.Text;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>How far one sequence's predicted geometry is from the truth (see <see cref="SyntheticGeometryEvaluation.Measure"/>).</summary>
/// <param name="AbsRel">Mean |s·d − d*| / d* over valid pixels, the depth d scaled by s = median(d*) / median(d) (0 is exact).</param>
/// <param name="Delta1">Fraction of valid pixels with max(s·d / d*, d* / s·d) &lt; 1.25 (1 is exact).</param>
/// <param name="PointError">Mean ‖s·p − p*‖ over valid pixels, both point maps in the first camera's frame, the truth p*
/// divided by its mean distance from that camera and the prediction p scaled onto it by least squares,
/// s = Σ p·p* / Σ p·p (0 is exact; every point at the camera scores 1).</param>
public sealed record GeometryError(double AbsRel, double Delta1, double PointError);

/// <summary>One held-out scene: the frames VGGT saw, its error, and the depth error of a constant depth (median-scaled,
/// so every pixel at the true median: what a model that knows nothing of the room's shape scores).</summary>
public sealed record HeldOutGeometry(int Seed, IReadOnlyList<int> Frames, GeometryError Vggt, double ConstantDepthAbsRel, double ConstantDepthDelta1);

/// <summary>What <see cref="SyntheticGeometryEvaluation.Evaluate"/> measured: means over scenes with 95 % bootstrap intervals
/// over scenes (AbsRel and point error as fractions, δ &lt; 1.25 in percent).</summary>
public sealed record GeometryReport(IReadOnlyList<HeldOutGeometry> Scenes, string Sampler, ScoreInterval AbsRel, ScoreInterval Delta1,
    ScoreInterval PointError, ScoreInterval ConstantDepthAbsRel, ScoreInterval ConstantDepthDelta1)
{
    public string FormatTable()
    {
        static string F3(ScoreInterval i) => string.Create(CultureInfo.InvariantCulture, $"{i.Value:F3} [{i.Low:F3}, {i.High:F3}]");
        var seeds = Scenes.Select(s => s.Seed).ToList();
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture,
            $"VGGT geometry on held-out scenes: {Scenes.Count} (seeds {seeds.Min()}–{seeds.Max()}), {Scenes.Average(x => x.Frames.Count):0.##} frames each ({Sampler}); 95 % bootstrap intervals over scenes");
        s.AppendLine($"{"measure",-36} {"VGGT",-22} {"constant depth",-22}");
        s.AppendLine($"{"depth AbsRel (median-scaled)",-36} {F3(AbsRel),-22} {F3(ConstantDepthAbsRel),-22}");
        s.AppendLine($"{"depth δ<1.25 (%)",-36} {Delta1,-22} {ConstantDepthDelta1,-22}");
        s.AppendLine($"{"point error (all at the camera: 1)",-36} {F3(PointError),-22} {"–",-22}");
        return s.ToString();
    }
}

/// <summary>One scene's frames as VGGT saw them, beside the renderer's truth (CPU, float32); dispose to free them.</summary>
/// <param name="Images">[S, 3, H, W] in [0, 1], VGGT's input.</param>
/// <param name="TrueDepth">[S, H, W] the renderer's depth in metres.</param>
/// <param name="PredictedDepth">[S, H, W] VGGT's depth times the median scale s of <see cref="GeometryError.AbsRel"/>, so in metres too.</param>
/// <param name="Valid">[S, H, W] bool: pixels with true geometry.</param>
public sealed record SceneGeometry(int Seed, IReadOnlyList<int> Frames, Tensor Images, Tensor TrueDepth, Tensor PredictedDepth, Tensor Valid,
    GeometryError Error) : IDisposable
{
    public void Dispose()
    {
        Images.Dispose();
        TrueDepth.Dispose();
        PredictedDepth.Dispose();
        Valid.Dispose();
    }
}

/// <summary>
/// VGGT's geometry measured on synthetic scenes against the renderer's exact depth and world points, as monocular and
/// video depth are measured (AbsRel and δ &lt; 1.25 after median scaling, one scale per sequence since VGGT predicts
/// one sequence at one scale), plus the point maps' error in the first camera's frame, the truth at unit mean distance as
/// VGGT's training normalises it and the prediction scaled onto it. Scenes are the bootstrap's units, as in
/// <see cref="SyntheticSceneEvaluation"/>.
/// </summary>
public static class SyntheticGeometryEvaluation
{
    /// <summary>
    /// The error of predicted depth [S, H, W] (or [S, H, W, 1]) and points [S, H, W, 3] against the true depth [S, H, W]
    /// and the true points [S, H, W, 3] in the same frame (the first camera's; any scale) over the pixels where
    /// <paramref name="valid"/> [S, H, W] is true. Formulas: <see cref="GeometryError"/>.
    /// </summary>
    public static GeometryError Measure(Tensor predictedDepth, Tensor trueDepth, Tensor predictedPoints, Tensor truePoints, Tensor valid)
    {
        using var scope = torch.NewDisposeScope();
        var (d, g) = DepthPair(predictedDepth, trueDepth, valid);
        double scale = MedianScale(d, g);
        var (absRel, delta1) = DepthError(d * scale, g);
        var mask = valid.to(ScalarType.Bool).cpu();
        if (!predictedPoints.shape.SequenceEqual([.. mask.shape, 3]) || !truePoints.shape.SequenceEqual([.. mask.shape, 3]))
            throw new ArgumentException($"points must be [{string.Join(", ", mask.shape)}, 3] as the valid mask; got predicted " +
                $"[{string.Join(", ", predictedPoints.shape)}] and true [{string.Join(", ", truePoints.shape)}]");
        var p = predictedPoints.detach().cpu().to(ScalarType.Float64)[mask];
        var q = truePoints.detach().cpu().to(ScalarType.Float64)[mask];
        q /= q.norm(1).mean().clamp_min(1e-12);
        var fit = (p * q).sum() / (p * p).sum().clamp_min(1e-12);
        return new GeometryError(absRel, delta1, (fit * p - q).norm(1).mean().item<double>());
    }

    /// <summary>VGGT (all heads, no autograd) on <paramref name="frames"/> of <paramref name="scene"/> as one sequence, beside the truth.</summary>
    public static SceneGeometry Predict(VggtModel vggt, SyntheticScene scene, IReadOnlyList<int> frames)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (images, truth) = VggtGroundTruth.FromScene(scene, frames);
        using var ownedTruth = truth;
        var weight = vggt.parameters().First();
        using var predictions = vggt.forward(images.to(weight.dtype, weight.device));
        var mask = truth.PointMasks[0];
        // The truth in the first camera's frame (VGGT's own normalisation; the point error divides the scale out again).
        var normalized = VggtLoss.NormalizeGroundTruth(truth.Extrinsics, truth.WorldPoints, truth.Depths, truth.PointMasks);
        var depth = predictions.Depth.to(ScalarType.Float32).cpu().squeeze(-1);
        var error = Measure(depth, truth.Depths[0], predictions.WorldPoints.to(ScalarType.Float32).cpu(), normalized.WorldPoints[0], mask);
        var (d, g) = DepthPair(depth, truth.Depths[0], mask);
        var scaled = depth * MedianScale(d, g);
        return new SceneGeometry(scene.Seed, [.. frames], images.MoveToOuterDisposeScope(), truth.Depths[0].clone().MoveToOuterDisposeScope(),
            scaled.MoveToOuterDisposeScope(), mask.clone().MoveToOuterDisposeScope(), error);
    }

    /// <summary>
    /// <paramref name="vggt"/>'s error on the scenes of <paramref name="seeds"/> (rendered with <paramref name="scene"/>), each
    /// on the frames <paramref name="sampler"/> chooses (e.g. the recipe's: the frames a question is answered from).
    /// </summary>
    public static GeometryReport Evaluate(VggtModel vggt, SyntheticSceneOptions scene, IReadOnlyList<int> seeds, IFrameSampler sampler,
        Action<string>? log = null, int resamples = 1000)
    {
        if (seeds.Count == 0) throw new ArgumentException("Give at least one scene seed.", nameof(seeds));
        var scenes = new List<HeldOutGeometry>();
        foreach (int seed in seeds)
        {
            var room = SyntheticScene.Create(seed, scene);
            var frames = sampler.Select(room.AsVideoSource()).Indices;
            using var maps = Predict(vggt, room, frames);
            using var constantScope = torch.NewDisposeScope();
            var (_, g) = DepthPair(maps.TrueDepth, maps.TrueDepth, maps.Valid);
            var (constantAbsRel, constantDelta1) = DepthError(torch.full_like(g, Median(g)), g);
            scenes.Add(new HeldOutGeometry(seed, frames, maps.Error, constantAbsRel, constantDelta1));
            log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"{room.SceneName}: AbsRel {maps.Error.AbsRel:F3}, δ<1.25 {100 * maps.Error.Delta1:F1} %, point error {maps.Error.PointError:F3}"));
        }
        var samples = SyntheticSceneEvaluation.Resample(scenes, resamples).ToList();
        ScoreInterval Mean(Func<HeldOutGeometry, double> measure, double unit = 1) =>
            SyntheticSceneEvaluation.Interval(unit * scenes.Average(measure), samples.Select(drawn => unit * drawn.Average(measure)));
        return new GeometryReport(scenes, sampler.Settings, Mean(s => s.Vggt.AbsRel), Mean(s => s.Vggt.Delta1, 100), Mean(s => s.Vggt.PointError),
            Mean(s => s.ConstantDepthAbsRel), Mean(s => s.ConstantDepthDelta1, 100));
    }

    /// <summary>
    /// Writes into <paramref name="folder"/> (and returns it) the tiny model drawn from <paramref name="recipe"/>'s seed
    /// before any training, whose VGGT is where stage 1 starts (the tests rerun stage 1's first steps from it): the
    /// reference a trained VGGT's error is read against.
    /// </summary>
    public static string WriteUntrainedModel(RoomsTinyRecipe recipe, string folder)
    {
        TinyCheckpoint.Create(folder, recipe.InitSeed);
        return folder;
    }

    /// <summary>The valid pixels' predicted and true depths, float64 on the CPU.</summary>
    static (Tensor Predicted, Tensor True) DepthPair(Tensor predictedDepth, Tensor trueDepth, Tensor valid)
    {
        var mask = valid.to(ScalarType.Bool).cpu();
        var d = predictedDepth.detach().cpu().to(ScalarType.Float64);
        if (d.dim() == mask.dim() + 1 && d.shape[^1] == 1) d = d.squeeze(-1);
        if (!d.shape.SequenceEqual(mask.shape) || !trueDepth.shape.SequenceEqual(mask.shape))
            throw new ArgumentException($"depths must be [{string.Join(", ", mask.shape)}] as the valid mask; got predicted " +
                $"[{string.Join(", ", predictedDepth.shape)}] and true [{string.Join(", ", trueDepth.shape)}]");
        if (!mask.any().item<bool>()) throw new ArgumentException("no valid pixel to measure", nameof(valid));
        return (d[mask], trueDepth.detach().cpu().to(ScalarType.Float64)[mask]);
    }

    static double Median(Tensor values) => values.quantile(0.5).item<double>();

    static double MedianScale(Tensor predicted, Tensor truth)
    {
        double median = Median(predicted);
        if (!(median > 0) || !double.IsFinite(median))
            throw new ArgumentException($"the predicted depth's median is {median}: it cannot be scaled to the truth");
        return Median(truth) / median;
    }

    static (double AbsRel, double Delta1) DepthError(Tensor scaled, Tensor truth) =>
        ((scaled - truth).abs().div(truth).mean().item<double>(),
         torch.maximum(scaled / truth, truth / scaled).lt(1.25).to(ScalarType.Float64).mean().item<double>());
}
