using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// RMSNorm per patch, then each merge unit's m² consecutive patches concatenated and projected:
/// Linear(m²·hidden → m²·hidden) → GELU (exact erf) → Linear(→ out_hidden). Keys <c>ln_q</c>, <c>mlp.0</c>, <c>mlp.2</c>.
/// </summary>
public sealed class Qwen2VisionPatchMerger : nn.Module<Tensor, Tensor>
{
    public readonly Qwen2RmsNorm ln_q;
    public readonly Sequential mlp;
    readonly long _unitWidth;

    public Qwen2VisionPatchMerger(int hiddenSize, int outHiddenSize, int spatialMergeSize, double rmsNormEps, Device? device = null, ScalarType? dtype = null)
        : base(nameof(Qwen2VisionPatchMerger))
    {
        _unitWidth = (long)hiddenSize * spatialMergeSize * spatialMergeSize;
        ln_q = new Qwen2RmsNorm(hiddenSize, rmsNormEps, device, dtype);
        mlp = nn.Sequential(
            nn.Linear(_unitWidth, _unitWidth, hasBias: true, device, dtype),
            nn.GELU(),
            nn.Linear(_unitWidth, outHiddenSize, hasBias: true, device, dtype));
        RegisterComponents();
    }

    /// <summary>
    /// [patches, hidden] (merge units contiguous) → [patches / m², out_hidden]. In the tower its input is the last
    /// block's output in window order; transformers' forward then restores the input order with
    /// <c>index_select(0, argsort(window_index))</c> (see <see cref="Qwen2VisionTransformer.get_window_index"/>).
    /// </summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return mlp.forward(ln_q.forward(x).view(-1, _unitWidth)).MoveToOuterDisposeScope();
    }
}
