using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// transformers' <c>Qwen2_5_VLVisionAttention</c>: fused qkv (bias), 2D rotary of q and k in fp32
/// (<c>apply_rotary_pos_emb_vision</c>), attention within the segments of <c>cu_seqlens</c> (SDPA, scale 1/√head_dim),
/// output proj (bias).
/// </summary>
public sealed class Qwen2VisionAttention : nn.Module
{
    public readonly Linear qkv;
    public readonly Linear proj;
    readonly int _numHeads;

    public Qwen2VisionAttention(int hiddenSize, int numHeads, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2VisionAttention))
    {
        qkv = nn.Linear(hiddenSize, 3L * hiddenSize, hasBias: true, device, dtype);
        proj = nn.Linear(hiddenSize, hiddenSize, hasBias: true, device, dtype);
        _numHeads = numHeads;
        RegisterComponents();
    }

    public int NumHeads => _numHeads;

    public int HeadDim => (int)(proj.weight!.shape[0] / _numHeads);

    /// <summary>
    /// transformers' forward: each segment of <paramref name="cuSeqlens"/> attends within itself.
    /// </summary>
    /// <param name="hiddenStates">[seq, hidden]: the tower's tokens in window order (see
    /// <see cref="Qwen2VisionTransformer.get_window_index"/>), already normalised by the block's <c>norm1</c>.</param>
    /// <param name="cuSeqlens">[segments + 1] integer boundaries from 0 to seq: <c>cu_window_seqlens</c> for window
    /// attention, <c>cu_seqlens</c> for the full-attention blocks.</param>
    /// <param name="positionEmbeddings">(cos, sin), each [seq, head_dim] (any float dtype; applied in fp32), from
    /// <see cref="Qwen2VisionTransformer.position_embeddings"/>.</param>
    /// <returns>[seq, hidden].</returns>
    public Tensor forward(Tensor hiddenStates, Tensor cuSeqlens, (Tensor Cos, Tensor Sin) positionEmbeddings)
    {
        using var scope = torch.NewDisposeScope();
        var (cos, signedSin) = RotaryTables(hiddenStates, positionEmbeddings);
        using var segments = SegmentedAttention.FromCuSeqlens(cuSeqlens, hiddenStates.shape[0], hiddenStates.device);
        return forward(hiddenStates, cos, signedSin, segments).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The standard (cos, sin) [seq, head_dim] as the rotary kernel reads them: fp32 [seq, 1, head_dim] cos and signed sin
    /// (<see cref="RotaryEmbedding.SignedSin"/>).
    /// </summary>
    internal (Tensor Cos, Tensor SignedSin) RotaryTables(Tensor hiddenStates, (Tensor Cos, Tensor Sin) positionEmbeddings)
    {
        if (hiddenStates.dim() != 2 || hiddenStates.shape[1] != proj.weight!.shape[1])
            throw new ArgumentException($"The vision attention takes hidden_states [seq, {proj.weight!.shape[1]}], got [{string.Join(", ", hiddenStates.shape)}].", nameof(hiddenStates));
        long seq = hiddenStates.shape[0], headDim = HeadDim;
        foreach (var (name, table) in new[] { ("cos", positionEmbeddings.Cos), ("sin", positionEmbeddings.Sin) })
            if (table.numel() != seq * headDim || table.shape[0] != seq || table.shape[^1] != headDim)
                throw new ArgumentException(
                    $"position_embeddings {name} must be [seq, head_dim] = [{seq}, {headDim}], got [{string.Join(", ", table.shape)}].", nameof(positionEmbeddings));
        using var scope = torch.NewDisposeScope();
        Tensor Table(Tensor t) => t.to(ScalarType.Float32, hiddenStates.device).reshape(seq, 1, headDim).contiguous();
        var cos = Table(positionEmbeddings.Cos);
        var signedSin = RotaryEmbedding.SignedSin(Table(positionEmbeddings.Sin));
        return (cos.MoveToOuterDisposeScope(), signedSin.MoveToOuterDisposeScope());
    }

    /// <param name="x">[patches, hidden]</param>
    /// <param name="cos">[patches, 1, head_dim] fp32</param>
    /// <param name="signedSin">[patches, 1, head_dim] fp32: sin with its first half negated (see
    /// <see cref="RotaryEmbedding.ApplyPromoted"/>).</param>
    internal Tensor forward(Tensor x, Tensor cos, Tensor signedSin, SegmentedAttention segments)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0];
        // [n, 3·hidden] → [3, n, heads, head_dim]
        var qkvHeads = qkv.call(x).reshape(n, 3, _numHeads, -1).permute(1, 0, 2, 3);
        // q and k rotated together, in fp32 as the reference, without materialising fp32 copies of them (on CUDA in one
        // fused kernel, with the same rounding).
        var qkHeads = qkvHeads.narrow(0, 0, 2);
        var qk = FusedVisionRope.TryApply(qkHeads, cos, signedSin) ?? RotaryEmbedding.ApplyPromoted(qkHeads, cos, signedSin).to(x.dtype);
        var attended = segments.Attend(qk[0], qk[1], qkvHeads[2]);
        return proj.call(attended).MoveToOuterDisposeScope();
    }
}
