namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// How the decoder computes self-attention, as transformers' <c>attn_implementation</c> names it, plus this library's
/// fast path. All three give the same numbers up to floating-point reassociation (tests hold them within 1e-6).
/// </summary>
public enum AttentionImplementation
{
    /// <summary>transformers' <c>eager_attention_forward</c>: softmax(q·kᵀ/√d + mask) in fp32, times v.</summary>
    Eager,
    /// <summary>transformers' <c>sdpa_attention_forward</c>: <c>scaled_dot_product_attention</c> over repeated K/V heads.</summary>
    Sdpa,
    /// <summary>
    /// The default: <see cref="Sdpa"/> with q/k/v as one GEMM, the rotation of q and k as one pass, and at decode (one
    /// query token) the query heads of a K/V group folded into the query axis instead of repeating K/V
    /// (<see cref="Qwen2FusedAttention"/>).
    /// </summary>
    Fused,
}
