using SpatialMllm.Research.Models;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>VGGT's depth and point error against the renderer's truth (<see cref="SyntheticGeometryEvaluation"/>).</summary>
public class SyntheticGeometryEvaluationTests(ITestOutputHelper output)
{
    /// <summary>Rooms neither trained on nor measured (the recipe's held-out seeds) nor the demo's.</summary>
    static readonly int[] TestSeeds = [950_010, 950_011];

    static Tensor Depth(params double[] values) => torch.tensor(values, ScalarType.Float64).view(1, 1, values.Length);

    static Tensor Points(params double[] z) =>
        torch.stack([torch.zeros(z.Length, ScalarType.Float64), torch.zeros(z.Length, ScalarType.Float64), torch.tensor(z, ScalarType.Float64)], dim: -1).view(1, 1, z.Length, 3);

    [Fact]
    public void Exact_geometry_has_no_error_at_any_scale()
    {
        using var scope = torch.NewDisposeScope();
        var depth = Depth(1, 2, 3, 4);
        var points = Points(1, 3, 1, 3);
        var valid = torch.ones(1, 1, 4, dtype: ScalarType.Bool);
        var exact = SyntheticGeometryEvaluation.Measure(depth, depth, points, points, valid);
        Assert.Equal(new GeometryError(0, 1, 0), exact);
        // VGGT predicts up to scale: three times the depth and the points are as right.
        var scaled = SyntheticGeometryEvaluation.Measure(3 * depth, depth, 3 * points, points, valid);
        Assert.Equal(0, scaled.AbsRel, 12);
        Assert.Equal(1, scaled.Delta1, 12);
        Assert.Equal(0, scaled.PointError, 12);
    }

    [Fact]
    public void Errors_are_the_hand_computed_ones_over_valid_pixels()
    {
        using var scope = torch.NewDisposeScope();
        // Truth 1, 2, 3, 4 (median 2.5); prediction 2, 4, 6, 16 (median 5): scaled by 0.5 to 1, 2, 3, 8, so
        // AbsRel = (0 + 0 + 0 + 4/4) / 4 = 0.25 and δ<1.25 holds for 3 of 4 pixels (8/4 = 2 does not).
        // Points: truth at z = 1, 3, 1, 3 (mean distance 2 → 0.5, 1.5, …); prediction all at z = 5 (→ 1): 0.5 off each.
        // A fifth pixel, invalid, is wildly wrong and must not count.
        var error = SyntheticGeometryEvaluation.Measure(Depth(2, 4, 6, 16, 1000), Depth(1, 2, 3, 4, 0.001),
            Points(5, 5, 5, 5, -1000), Points(1, 3, 1, 3, 0.001), torch.tensor(new[] { true, true, true, true, false }).view(1, 1, 5));
        Assert.Equal(0.25, error.AbsRel, 12);
        Assert.Equal(0.75, error.Delta1, 12);
        Assert.Equal(0.5, error.PointError, 12);
    }

    [Fact]
    public void Mismatched_shapes_and_an_empty_mask_are_refused_by_name()
    {
        using var scope = torch.NewDisposeScope();
        var shapes = Assert.Throws<ArgumentException>(() => SyntheticGeometryEvaluation.Measure(Depth(1, 2), Depth(1, 2, 3), Points(1, 2), Points(1, 2), torch.ones(1, 1, 2, dtype: ScalarType.Bool)));
        Assert.Contains("depths must be [1, 1, 2]", shapes.Message);
        var empty = Assert.Throws<ArgumentException>(() => SyntheticGeometryEvaluation.Measure(Depth(1, 2), Depth(1, 2), Points(1, 2), Points(1, 2), torch.zeros(1, 1, 2, dtype: ScalarType.Bool)));
        Assert.Contains("no valid pixel", empty.Message);
    }

    [Fact]
    public void Rooms_tiny_is_measured_on_the_answered_frames_beside_a_constant_depth_computed_independently()
    {
        var recipe = RoomsTinyRecipe.Default;
        Assert.Empty(TestSeeds.Intersect(recipe.TrainSeeds.Concat(recipe.HeldOutSeeds).Append(recipe.DemoSeed)));
        using var model = SpatialMllmModel.Load(Path.Combine(TestPaths.RepoRoot, "checkpoints", "rooms-tiny"), torch.CPU, ScalarType.Float32);
        var report = SyntheticGeometryEvaluation.Evaluate(model.spatial_encoder!.vggt_model, recipe.Scene, TestSeeds, recipe.Sampler, output.WriteLine, resamples: 200);
        output.WriteLine(report.FormatTable());

        foreach (var scene in report.Scenes)
        {
            var room = SyntheticScene.Create(scene.Seed, recipe.Scene);
            Assert.Equal(recipe.Sampler.Select(room.AsVideoSource()).Indices, scene.Frames);
            // The constant depth's error in plain arithmetic on the rendered depth: every pixel at the median.
            double[] depth;
            using (var frames = room.Render(scene.Frames)) depth = frames.Depth.to(ScalarType.Float64).data<double>().ToArray();
            var sorted = depth.Order().ToArray();
            double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
            Assert.Equal(depth.Average(d => Math.Abs(median - d) / d), scene.ConstantDepthAbsRel, 6);
            Assert.Equal(depth.Average(d => Math.Max(median / d, d / median) < 1.25 ? 1.0 : 0.0), scene.ConstantDepthDelta1, 6);
            Assert.InRange(scene.Vggt.AbsRel, 0, 1);
            Assert.InRange(scene.Vggt.Delta1, 0, 1);
            Assert.True(scene.Vggt.PointError > 0 && double.IsFinite(scene.Vggt.PointError), $"point error {scene.Vggt.PointError}");
        }
        Assert.Equal(report.Scenes.Average(s => s.Vggt.AbsRel), report.AbsRel.Value, 9);
        Assert.Equal(100 * report.Scenes.Average(s => s.Vggt.Delta1), report.Delta1.Value, 9);
        Assert.InRange(report.AbsRel.Value, report.AbsRel.Low, report.AbsRel.High);
    }

    [Fact]
    public void Predicted_depth_is_shown_at_the_truths_median()
    {
        var recipe = RoomsTinyRecipe.Default;
        using var model = SpatialMllmModel.Load(Path.Combine(TestPaths.RepoRoot, "checkpoints", "rooms-tiny"), torch.CPU, ScalarType.Float32);
        var room = SyntheticScene.Create(TestSeeds[0], recipe.Scene);
        using var maps = SyntheticGeometryEvaluation.Predict(model.spatial_encoder!.vggt_model, room, [0, 5, 10]);
        Assert.Equal(new long[] { 3, 3, 84, 112 }, maps.Images.shape);
        Assert.Equal(new long[] { 3, 84, 112 }, maps.PredictedDepth.shape);
        Assert.Equal(maps.TrueDepth[maps.Valid].to(ScalarType.Float64).quantile(0.5).item<double>(), maps.PredictedDepth[maps.Valid].to(ScalarType.Float64).quantile(0.5).item<double>(), 3);
        var again = SyntheticGeometryEvaluation.Measure(maps.PredictedDepth, maps.TrueDepth, maps.Images.permute(0, 2, 3, 1), maps.Images.permute(0, 2, 3, 1), maps.Valid);
        Assert.Equal(maps.Error.AbsRel, again.AbsRel, 6);   // already at the truth's scale: the same depth error
    }
}
