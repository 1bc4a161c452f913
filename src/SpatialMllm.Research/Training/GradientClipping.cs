using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>torch.nn.utils.clip_grad_norm_: one global L2 norm over every gradient, all scaled by min(1, max / (norm + 1e-6)).</summary>
public static class GradientClipping
{
    /// <summary>Clips in place and returns the norm before clipping (what the Trainer logs as grad_norm).</summary>
    public static double ClipGlobalNorm(IEnumerable<Tensor> gradients, double maxNorm)
    {
        var grads = gradients.ToList();
        if (grads.Count == 0) return 0;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var norms = torch.stack(grads.Select(g => g.norm()).ToArray());
        var total = norms.norm();
        // clip_coef clamped to 1 and multiplied unconditionally, as PyTorch does (no host sync needed for the scale).
        var coefficient = (maxNorm / (total + 1e-6)).clamp_max(1.0);
        foreach (var g in grads) g.mul_(coefficient.to(g.dtype));
        return total.to(ScalarType.Float64).item<double>();
    }
}
