using System.Text.Json;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Verification;

/// <summary>
/// The trainable-VGGT fixture (<c>vggt_train.safetensors</c> + <c>vggt_train.json</c>, made by
/// <c>environment/fixtures/make_vggt_train_fixture.py</c> with the reference): (1) the seed's SFT loss on the tiny model
/// with <c>tune_mm_spatial_encoder</c> and the raw gradients of every VGGT parameter (and a few others), (2) VGGT's
/// training losses on fixed tensors and their gradients with respect to the predictions. Losses within 1e-5 relative;
/// each gradient within 1e-4 of that tensor's largest magnitude, each gradient norm within 1e-4 relative.
/// </summary>
public static class VggtTrainingFixtureVerifier
{
    public const string FileName = "vggt_train.safetensors", SpecName = "vggt_train.json";
    public const double LossTolerance = 1e-5, GradientTolerance = 1e-4;

    /// <summary>Checks named after the fixture's tensors (<c>sft.loss</c>, <c>grad.KEY</c>, <c>vggt_loss.objective</c>, …),
    /// plus <c>trainable_set</c> and <c>no_grad.KEY</c> (VGGT tensors the SFT loss does not reach: the heads).</summary>
    /// <param name="fixtureFolder">The folder holding vggt_train.safetensors and vggt_train.json.</param>
    /// <param name="tinyFolder">The tiny Spatial-MLLM fixture it was made from (config, weights, io.safetensors).</param>
    public static IReadOnlyList<TensorCheck> Verify(string fixtureFolder, string tinyFolder, Device? device = null, bool gradientCheckpointing = false)
    {
        device ??= torch.CPU;
        var checks = new List<TensorCheck>();
        using var expected = SafetensorsFile.Open(Path.Combine(fixtureFolder, FileName));
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(fixtureFolder, SpecName)));
        VerifySft(checks, expected, doc.RootElement, tinyFolder, device, gradientCheckpointing);
        VerifyLosses(checks, expected, device);
        return checks;
    }

    static void VerifySft(List<TensorCheck> checks, SafetensorsFile expected, JsonElement spec, string tinyFolder, Device device, bool gradientCheckpointing)
    {
        using var io = SafetensorsFile.Open(Path.Combine(tinyFolder, "io.safetensors"));
        using var model = SpatialMllmModel.Load(tinyFolder, device, ScalarType.Float32);
        model.model.GradientCheckpointing = gradientCheckpointing;
        model.spatial_encoder!.vggt_model.aggregator.GradientCheckpointing = gradientCheckpointing;
        var trainable = new TrainableSet(TuneSpatialEncoder: true).Apply(model);
        var expectedKeys = spec.GetProperty("trainable").EnumerateArray().Select(e => e.GetString()!).ToHashSet();
        var ours = trainable.Select(p => p.Key).ToHashSet();
        var extra = ours.Except(expectedKeys).Order().ToList();
        var absent = expectedKeys.Except(ours).Order().ToList();
        checks.Add(new TensorCheck("trainable_set", extra.Count + absent.Count, 0, 0, true, extra.Count + absent.Count == 0,
            extra.Count + absent.Count == 0 ? null : $"trainable here only: [{string.Join(", ", extra)}]; there only: [{string.Join(", ", absent)}]"));

        using var scope = torch.NewDisposeScope();
        var grid = io.Read("video_grid_thw").to(ScalarType.Int64).data<long>().ToArray();
        using var example = new SftExample(expected.Read("sft.input_ids").data<long>().ToArray(), expected.Read("sft.labels").data<long>().ToArray(),
            io.Read("pixel_values_videos", ScalarType.Float32, device), new GridThw((int)grid[0], (int)grid[1], (int)grid[2]),
            io.Read("second_per_grid_ts").to(ScalarType.Float64).item<double>(), io.Read("video_tchw", ScalarType.Float32, device), "vggt_train");
        var loss = SftObjective.Loss(model, example);
        loss.backward();
        checks.Add(Relative("sft.loss", loss.item<float>(), expected.Read("sft.loss").item<float>(), LossTolerance));
        using (var noGrad = torch.no_grad())
        {
            var norm = torch.stack(trainable.Select(p => p.Parameter.grad).OfType<Tensor>().Select(g => g.norm()).ToArray()).norm();
            checks.Add(Relative("sft.grad_norm", norm.item<float>(), expected.Read("sft.grad_norm").item<float>(), GradientTolerance));
        }
        var byKey = trainable.ToDictionary(p => p.Key, p => p.Parameter);
        foreach (string name in expected.Entries.Keys.Where(k => k.StartsWith("grad.", StringComparison.Ordinal)).Order())
        {
            string key = name["grad.".Length..];
            if (!byKey.TryGetValue(key, out var parameter) || parameter.grad is null)
            {
                checks.Add(new TensorCheck(name, double.NaN, double.NaN, GradientTolerance, false, false, "no gradient here"));
                continue;
            }
            var flat = parameter.grad.detach().reshape(-1);
            long stride = Math.Max(1, flat.numel() / 4096);   // the generator's sampling of large gradients
            checks.Add(RelativeToMax(name, expected.Read(name), flat.slice(0, 0, flat.numel(), stride)));
            checks.Add(Relative("grad_norm." + key, flat.norm().item<float>(), expected.Read("grad_norm." + key).item<float>(), GradientTolerance));
        }
        foreach (var key in spec.GetProperty("spatial_encoder_without_grad").EnumerateArray().Select(e => e.GetString()!))
        {
            var grad = byKey.TryGetValue(key, out var parameter) ? parameter.grad : null;
            bool none = grad is null || grad.abs().max().item<float>() == 0;
            checks.Add(new TensorCheck("no_grad." + key, 0, 0, 0, true, none, none ? null : "the reference has no gradient here"));
        }
    }

    static void VerifyLosses(List<TensorCheck> checks, SafetensorsFile expected, Device device)
    {
        using var scope = torch.NewDisposeScope();
        Tensor Read(string name) => expected.Read("vggt_loss." + name).to(device);
        Tensor Leaf(string name) => Read("pred_" + name).requires_grad_(true);
        var poseList = Read("pred_pose_enc_list").unbind(0).Select(p => p.requires_grad_(true)).ToArray();
        var (depth, depthConf, points, pointsConf) = (Leaf("depth"), Leaf("depth_conf"), Leaf("world_points"), Leaf("world_points_conf"));
        using var truth = new VggtGroundTruth(Read("gt_extrinsics"), Read("gt_intrinsics"), Read("gt_depths"), Read("gt_world_points"),
            Read("point_masks").to(ScalarType.Bool));

        var (extrinsics, normalizedPoints, depths) = VggtLoss.NormalizeGroundTruth(truth.Extrinsics, truth.WorldPoints, truth.Depths, truth.PointMasks);
        checks.Add(RelativeToMax("vggt_loss.normalized_extrinsics", Read("normalized_extrinsics"), extrinsics));
        checks.Add(RelativeToMax("vggt_loss.normalized_world_points", Read("normalized_world_points"), normalizedPoints));
        checks.Add(RelativeToMax("vggt_loss.normalized_depths", Read("normalized_depths"), depths));
        checks.Add(RelativeToMax("vggt_loss.gt_pose_enc", Read("gt_pose_enc"),
            VggtLoss.PoseEncodingOf(extrinsics, truth.Intrinsics, depth.shape[2], depth.shape[3])));

        using var terms = VggtLoss.Compute(poseList, depth, depthConf, points, pointsConf, truth);
        foreach (var (name, value) in terms.Named)
            checks.Add(Relative("vggt_loss." + name, value.item<float>(), Read(name).item<float>(), LossTolerance));
        terms.Objective.backward();
        checks.Add(RelativeToMax("vggt_loss.grad_pose_enc_list", Read("grad_pose_enc_list"), torch.stack(poseList.Select(p => p.grad!).ToArray())));
        foreach (var (name, leaf) in new[] { ("depth", depth), ("depth_conf", depthConf), ("world_points", points), ("world_points_conf", pointsConf) })
            checks.Add(RelativeToMax("vggt_loss.grad_" + name, Read("grad_" + name), leaf.grad!));
    }

    static TensorCheck Relative(string name, double actual, double expected, double tolerance)
    {
        double abs = Math.Abs(actual - expected), rel = abs / Math.Max(Math.Abs(expected), 1e-30);
        return new TensorCheck(name, abs, rel, tolerance, false, rel <= tolerance);
    }

    /// <summary>max |ours − expected| / max |expected| (gradients are small; an absolute bound would say nothing).</summary>
    static TensorCheck RelativeToMax(string name, Tensor expected, Tensor actual)
    {
        using var scope = torch.NewDisposeScope();
        var a = actual.detach().cpu();
        var e = expected.cpu();
        if (!a.shape.SequenceEqual(e.shape))
            return new TensorCheck(name, double.NaN, double.NaN, GradientTolerance, false, false, $"shape [{string.Join(", ", a.shape)}], expected [{string.Join(", ", e.shape)}]");
        var (abs, _) = FixtureVerifier.Errors(e, a);
        double scale = Math.Max(e.abs().max().to(ScalarType.Float64).item<double>(), 1e-30);
        return new TensorCheck(name, abs, abs / scale, GradientTolerance, false, abs / scale <= GradientTolerance);
    }
}
