using SpatialMllm.Research.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// transformers' <c>Qwen2_5_VLVisionBlock</c>, a pre-norm ViT block: x += attn(norm1(x)); x += mlp(norm2(x)).
/// </summary>
public sealed class Qwen2VisionBlock : nn.Module
{
    public readonly Qwen2RmsNorm norm1;
    public readonly Qwen2RmsNorm norm2;
    public readonly Qwen2VisionAttention attn;
    public readonly Qwen2SwiGluMlp mlp;

    public Qwen2VisionBlock(Qwen2VisionConfig config, double rmsNormEps, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2VisionBlock))
    {
        norm1 = new Qwen2RmsNorm(config.HiddenSize, rmsNormEps, device, dtype);
        norm2 = new Qwen2RmsNorm(config.HiddenSize, rmsNormEps, device, dtype);
        attn = new Qwen2VisionAttention(config.HiddenSize, config.NumHeads, device, dtype);
        mlp = new Qwen2SwiGluMlp(config.HiddenSize, config.IntermediateSize, hasBias: true, config.HiddenAct, device, dtype);
        RegisterComponents();
    }

    /// <summary>transformers' forward, on its own (the tower runs the same code).</summary>
    /// <param name="hiddenStates">[seq, hidden]: the tower's tokens in window order (the previous block's output, or
    /// the patch embed's output reordered by <see cref="Qwen2VisionTransformer.get_window_index"/>).</param>
    /// <param name="cuSeqlens">[segments + 1] integer boundaries from 0 to seq: <c>cu_window_seqlens</c> for a window
    /// block, <see cref="Qwen2VisionTransformer.cu_seqlens"/> for a block of <c>fullatt_block_indexes</c>.</param>
    /// <param name="positionEmbeddings">(cos, sin), each [seq, head_dim], from
    /// <see cref="Qwen2VisionTransformer.position_embeddings"/>.</param>
    /// <returns>[seq, hidden].</returns>
    public Tensor forward(Tensor hiddenStates, Tensor cuSeqlens, (Tensor Cos, Tensor Sin) positionEmbeddings)
    {
        using var scope = torch.NewDisposeScope();
        var (cos, signedSin) = attn.RotaryTables(hiddenStates, positionEmbeddings);
        using var segments = SegmentedAttention.FromCuSeqlens(cuSeqlens, hiddenStates.shape[0], hiddenStates.device);
        return forward(hiddenStates, cos, signedSin, segments).MoveToOuterDisposeScope();
    }

    /// <summary>The tower's call: fp32 cos and signed sin [seq, 1, head_dim], segments prepared once for all blocks.</summary>
    internal Tensor forward(Tensor x, Tensor cos, Tensor sin, SegmentedAttention segments)
    {
        using var scope = torch.NewDisposeScope();
        x = x + attn.forward(norm1.forward(x), cos, sin, segments);
        x = x + mlp.forward(norm2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}
