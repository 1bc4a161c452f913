using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Verification;

/// <summary>One expected tensor of a fixture: what we computed against it.</summary>
/// <param name="MaxAbsError">max |ours − expected|.</param>
/// <param name="MaxRelError">max |ours − expected| / max(1, |expected|): absolute for small values, relative for large.</param>
/// <param name="Note">Why a tensor was skipped or failed before comparing (shape mismatch).</param>
public sealed record TensorCheck(string Name, double MaxAbsError, double MaxRelError, double Tolerance, bool Exact, bool Passed, string? Note = null);

/// <summary>
/// Feeds a fixture's inputs (<c>io.safetensors</c> beside the checkpoint) through our model, component by component
/// (each from the fixture's own inputs to that component, so an error points at one component), and compares every
/// expected tensor it can compute.
/// </summary>
public static class FixtureVerifier
{
    /// <param name="dtype">float32 (the fixture's) by default; bfloat16 with a looser tolerance shows bf16 error per tensor.</param>
    public static IReadOnlyList<TensorCheck> Verify(string folder, double tolerance = 1e-4, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        string ioPath = Path.Combine(folder, "io.safetensors");
        using var io = SafetensorsFile.Open(ioPath);
        using var model = SpatialMllmModel.Load(folder, device ?? torch.CPU, dtype);
        var checks = new List<TensorCheck>();
        using var noGrad = torch.no_grad();

        void Check(string name, Func<Tensor> compute, bool exact = false)
        {
            if (!io.Contains(name)) return;
            using var scope = torch.NewDisposeScope();
            var expected = io.Read(name);
            Tensor actual;
            try { actual = compute().cpu(); }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException)
            {
                checks.Add(new TensorCheck(name, double.NaN, double.NaN, tolerance, exact, false, e.Message));
                return;
            }
            if (!actual.shape.SequenceEqual(expected.shape))
            {
                checks.Add(new TensorCheck(name, double.NaN, double.NaN, tolerance, exact, false,
                    $"shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]"));
                return;
            }
            var (abs, rel) = Errors(expected, actual);
            checks.Add(new TensorCheck(name, abs, rel, exact ? 0 : tolerance, exact, exact ? abs == 0 : rel <= tolerance));
        }

        // Inputs go where the model is; outputs come back to the CPU to be compared.
        Tensor In(string name)
        {
            if (!io.Contains(name)) throw new ArgumentException($"{ioPath} has no input '{name}'.");
            var entry = io.Entry(name);
            // Model inputs take the model's dtype; the planted geometry feeds only the (float32) frame selector.
            bool modelInput = !name.StartsWith("sa_planted_", StringComparison.Ordinal)
                && entry.DType is ScalarType.Float32 or ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16;
            return io.Read(name, modelInput ? model.DType : null, model.Device);
        }
        var grid = In("video_grid_thw").to(ScalarType.Int64);
        long[] thw = grid.cpu().data<long>().ToArray();
        var gridThw = new GridThw((int)thw[0], (int)thw[1], (int)thw[2]);
        double secondPerGrid = In("second_per_grid_ts").to(ScalarType.Float64).item<double>();
        double fps = model.Processor.Config.TemporalPatchSize / secondPerGrid;

        // Processor: the frames are already at model size.
        Check("pixel_values_videos", () => { using var p = model.Processor.ProcessResized(io.Read("frames_uint8_tchw"), fps); return p.PixelValuesVideos.clone(); });
        Check("video_tchw", () => { using var p = model.Processor.ProcessResized(io.Read("frames_uint8_tchw"), fps); return p.VideoTchw.clone(); });

        // Vision tower and positions.
        Check("vision_embeds", () => model.visual.forward(In("pixel_values_videos"), grid));
        Check("position_ids", () => RopeIndex.Compute(In("input_ids"), model.Config.Tokens, model.Config.Vision, grid, In("second_per_grid_ts")).PositionIds, exact: true);
        Check("rope_deltas", () => RopeIndex.Compute(In("input_ids"), model.Config.Tokens, model.Config.Vision, grid, In("second_per_grid_ts")).RopeDeltas, exact: true);

        // VGGT and the connector.
        if (model.HasSpatialEncoder)
        {
            var aggregator = model.Vggt!.aggregator;
            Check("spatial_tokens_first", () => aggregator.ForwardLayer(In("video_tchw"), 0));
            Check("spatial_tokens_last", () => aggregator.ForwardLayer(In("video_tchw"), -1));
            Check("fused_embeds", () => model.connector!.forward(In("vision_embeds"), aggregator.ForwardLayer(In("video_tchw"), model.Config.Connector!.SpatialEmbedsLayerIdx),
                aggregator.PatchStartIndex, gridThw));
            var heads = new Lazy<VggtPredictionsHolder>(() => new VggtPredictionsHolder(model.Vggt.forward(In("video_tchw"))));
            Check("vggt_pose_enc", () => heads.Value.P.PoseEncoding.clone());
            Check("vggt_depth", () => heads.Value.P.Depth.clone());
            Check("vggt_depth_conf", () => heads.Value.P.DepthConfidence.clone());
            Check("vggt_world_points", () => heads.Value.P.WorldPoints.clone());
            Check("vggt_world_points_conf", () => heads.Value.P.WorldPointsConfidence.clone());
            if (heads.IsValueCreated) heads.Value.P.Dispose();
            foreach (string name in io.Entries.Keys.Where(k => k.StartsWith("sa_selected_tiny_vggt_k", StringComparison.Ordinal)))
            {
                int k = int.Parse(name["sa_selected_tiny_vggt_k".Length..]);
                Check(name, () =>
                {
                    var (points, confidence) = model.Vggt.Predict(In("video_tchw"));
                    return torch.tensor(SpaceAwareSelector.Select(points, confidence, k).Selected.Select(i => (long)i).ToArray());
                }, exact: true);
            }
        }

        // Decoder: logits at every position and cached greedy generation, from the fixture's fused tokens.
        Tensor Embeds() => model.Language.EmbedWithVisualTokens(In("input_ids"), In("fused_embeds"), model.Config.Tokens.VideoTokenId);
        Check("logits", () => model.Language.forward(Embeds(), In("position_ids")).squeeze(0));
        if (io.Contains("generated_ids"))
        {
            int steps = (int)io.Entry("generated_ids").Shape[1];
            var generation = new Lazy<GenerationResult>(() => Generation.Generate(model.Language, In("input_ids"), Embeds(), In("position_ids"), In("rope_deltas"),
                new GenerationOptions(model.Config.Tokens.EosTokenIds, MaxNewTokens: steps, ReturnStepLogits: true)));
            Check("generated_ids", () => generation.Value.Sequences.clone(), exact: true);
            Check("generated_step_logits", () => torch.cat(generation.Value.StepLogits.ToArray(), 0));
            if (generation.IsValueCreated) generation.Value.Dispose();
        }

        // Space-aware selection on planted geometry.
        foreach (string name in io.Entries.Keys.Where(k => k.StartsWith("sa_selected_planted_k", StringComparison.Ordinal)).Order())
        {
            int k = int.Parse(name["sa_selected_planted_k".Length..]);
            Check(name, () => torch.tensor(SpaceAwareSelector.Select(In("sa_planted_world_points"), In("sa_planted_world_points_conf"), k)
                .Selected.Select(i => (long)i).ToArray()), exact: true);
        }
        return checks;
    }

    /// <summary>Max absolute error and max error relative to max(1, |expected|), in float64.</summary>
    public static (double Abs, double Rel) Errors(Tensor expected, Tensor actual)
    {
        using var scope = torch.NewDisposeScope();
        var e = expected.to(ScalarType.Float64);
        var diff = (actual.to(ScalarType.Float64, expected.device) - e).abs();
        if (diff.NumberOfElements == 0) return (0, 0);
        return (diff.max().item<double>(), (diff / e.abs().clamp_min(1.0)).max().item<double>());
    }

    /// <summary>Keeps the heads' outputs out of the per-check dispose scopes (computed once, read five times).</summary>
    sealed class VggtPredictionsHolder
    {
        public VggtPredictionsHolder(Models.Vggt.VggtPredictions p)
        {
            foreach (var t in new[] { p.PoseEncoding, p.Depth, p.DepthConfidence, p.WorldPoints, p.WorldPointsConfidence }) t.DetachFromDisposeScope();
            P = p;
        }

        public Models.Vggt.VggtPredictions P { get; }
    }
}
