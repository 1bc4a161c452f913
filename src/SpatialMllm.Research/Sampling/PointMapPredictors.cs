using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>Where space-aware sampling gets its VGGT from.</summary>
internal static class PointMapPredictors
{
    /// <summary>
    /// VGGT with its point head from a Spatial-MLLM checkpoint or a VGGT-1B folder (see <see cref="VggtLoader.Load"/>);
    /// the sampler that loaded it disposes it. On cuda the aggregator runs in bf16 and the heads in fp32, as the
    /// reference's bf16 autocast over fp32 weights does. Frames reach VGGT at <paramref name="inputWidth"/> (see
    /// <see cref="VggtSamplingPreprocessor"/>).
    /// </summary>
    public static IPointMapPredictor FromModelFolder(string modelDir, Device? device = null, int inputWidth = VggtSamplingPreprocessor.TargetSize)
    {
        TorchRuntime.EnsureLoaded();
        device ??= TorchRuntime.DefaultDevice;
        var model = VggtLoader.Load(modelDir, device);
        var aggregatorType = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        model.aggregator.to(aggregatorType);
        return new DevicePointMapPredictor(model, device, aggregatorType, inputWidth);
    }

    /// <summary>A loaded VGGT as it is (its device and dtypes); the caller keeps and disposes the model.</summary>
    public static IPointMapPredictor Of(VggtModel model) => new ModelPointMapPredictor(model);

    sealed class ModelPointMapPredictor(VggtModel model) : IPointMapPredictor
    {
        public (Tensor WorldPoints, Tensor Confidence) Predict(Tensor frames) => model.Predict(frames);
    }

    /// <summary>Moves frames to the model's device and aggregator dtype; returns float32 point maps on that device, where
    /// the voxel selection then runs too.</summary>
    sealed class DevicePointMapPredictor(VggtModel model, Device device, ScalarType aggregatorType, int inputWidth) : IPointMapPredictor, IDisposable
    {
        public (Tensor WorldPoints, Tensor Confidence) PredictFrames(VideoSource video, IReadOnlyList<int> frames) =>
            Predict(CandidateFrames.Decode(video, frames, f => VggtSamplingPreprocessor.Preprocess(f, inputWidth)));

        public (Tensor WorldPoints, Tensor Confidence) Predict(Tensor frames)
        {
            using var scope = torch.NewDisposeScope();
            var (points, confidence) = model.Predict(frames.to(aggregatorType, device));
            return (points.to(ScalarType.Float32).MoveToOuterDisposeScope(), confidence.to(ScalarType.Float32).MoveToOuterDisposeScope());
        }

        public void Dispose() => model.Dispose();
    }
}
