using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// The full VGGT model as Spatial-MLLM instantiates it (<c>spatial_encoder.vggt_model.</c>): the aggregator plus
/// camera, depth and point heads. The track head's weights are in the checkpoints but it is never run, so it is
/// not built; <see cref="LoadWeights"/> skips its keys by name.
/// </summary>
public sealed class VggtModel : nn.Module
{
    /// <summary>Where the VGGT weights live in a Spatial-MLLM checkpoint (a bare VGGT-1B file uses "").</summary>
    public const string CheckpointPrefix = "spatial_encoder.vggt_model.";

    public readonly VggtAggregator aggregator;
    public readonly CameraHead camera_head;
    public readonly DptHead depth_head;
    public readonly DptHead point_head;

    /// <summary>Builds the module tree (on <paramref name="device"/>, e.g. <c>meta</c> to check shapes without memory).</summary>
    public VggtModel(SpatialEncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(VggtModel))
    {
        int dimIn = 2 * config.EmbedDim;
        aggregator = new VggtAggregator(config, device, dtype);
        camera_head = new CameraHead(dimIn, config.CameraHead, device: device, dtype: dtype);
        depth_head = new DptHead(dimIn, 2, DptActivation.Exp, config.PatchSize, config.DptHead, device, dtype);
        point_head = new DptHead(dimIn, 4, DptActivation.InverseLog, config.PatchSize, config.DptHead, device, dtype);
        RegisterComponents();
    }


    /// <summary>
    /// Copies the weights under <paramref name="prefix"/> into this model. <c>track_head.*</c> keys are skipped on
    /// purpose (Spatial-MLLM and the frame sampler never run the track head); any other mismatch is reported.
    /// </summary>
    internal LoadReport LoadWeights(Checkpoint checkpoint, string prefix = CheckpointPrefix)
    {
        string trackHead = prefix + "track_head.";
        return StateDictLoader.Load(this, checkpoint, prefix, skip: key => key.StartsWith(trackHead, StringComparison.Ordinal));
    }

    /// <summary>
    /// All heads on images [S, 3, H, W] in [0, 1] (one sequence; frame 0 is the reference camera). Returns pose
    /// encodings [S, 9] (and each refinement step's, for the camera loss), depth [S, H, W, 1], depth confidence
    /// [S, H, W], world points [S, H, W, 3] and their confidence [S, H, W]. Differentiable where PyTorch's would be (grad
    /// mode on, parameters that require grad): the forward VGGT's training losses (<c>Training.VggtLoss</c>) take.
    /// B sequences of one size, [B, S, 3, H, W], give the same with a leading B (VGGT's own batched forward).
    /// </summary>
    public VggtPredictions forward(Tensor images)
    {
        bool sequences = images.dim() == 5;
        if (!sequences) CheckFrames(images);
        else if (images.shape[2] != 3)
            throw new ArgumentException($"VGGT expects frames [B, S, 3, H, W] in [0, 1], got [{string.Join(", ", images.shape)}].");
        using var scope = torch.NewDisposeScope();
        var batched = sequences ? images : images.unsqueeze(0);
        var cameraLayer = aggregator.Depth - 1;
        using var layers = aggregator.forward(batched, [cameraLayer, .. depth_head.LayerIndexes, .. point_head.LayerIndexes]);
        long h = images.shape[^2], w = images.shape[^1];
        var poseEncodings = camera_head.ForwardIterations(layers[cameraLayer]);
        var (depth, depthConf) = depth_head.forward(layers, h, w);
        var (points, pointsConf) = point_head.forward(layers, h, w);
        Tensor Out(Tensor t) => (sequences ? t : t.squeeze(0)).MoveToOuterDisposeScope();
        return new VggtPredictions(Out(poseEncodings[^1]), Out(depth), Out(depthConf), Out(points), Out(pointsConf))
        {
            PoseEncodingIterations = [.. poseEncodings.Select(Out)],
        };
    }

    /// <summary>
    /// Point-map prediction for the space-aware frame sampler (<c>PointMapPredictors.Of</c> makes it the sampler's predictor):
    /// frames [S, 3, H, W] in [0, 1] → world points [S, H, W, 3] and confidence [S, H, W]. Runs only the
    /// aggregator layers and the head the point map needs, without autograd (a sampler's prediction).
    /// </summary>
    public (Tensor WorldPoints, Tensor Confidence) Predict(Tensor frames)
    {
        CheckFrames(frames);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        using var layers = aggregator.forward(frames.unsqueeze(0), point_head.LayerIndexes);
        var (points, conf) = point_head.forward(layers, frames.shape[2], frames.shape[3]);
        return (points.squeeze(0).MoveToOuterDisposeScope(), conf.squeeze(0).MoveToOuterDisposeScope());
    }

    static void CheckFrames(Tensor images)
    {
        if (images.dim() != 4 || images.shape[1] != 3)
            throw new ArgumentException($"VGGT expects frames [S, 3, H, W] in [0, 1], got [{string.Join(", ", images.shape)}].");
    }
}

/// <summary>What <see cref="VggtModel.forward"/> predicts for one sequence of S frames of H × W pixels.</summary>
public sealed record VggtPredictions(Tensor PoseEncoding, Tensor Depth, Tensor DepthConfidence, Tensor WorldPoints, Tensor WorldPointsConfidence)
    : IDisposable
{
    /// <summary>The camera head's estimate [S, 9] after each refinement step (VGGT's <c>pose_enc_list</c>; the last is
    /// <see cref="PoseEncoding"/>'s value); empty when not kept.</summary>
    public IReadOnlyList<Tensor> PoseEncodingIterations { get; init; } = [];

    public void Dispose()
    {
        foreach (var p in PoseEncodingIterations) p.Dispose();
        PoseEncoding.Dispose();
        Depth.Dispose();
        DepthConfidence.Dispose();
        WorldPoints.Dispose();
        WorldPointsConfidence.Dispose();
    }
}
