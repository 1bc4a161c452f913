using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The fast path of one <see cref="Qwen2Attention"/> (<see cref="AttentionImplementation.Fused"/>), equal to its plain
/// <see cref="Qwen2Attention.forward"/> up to floating-point reassociation:
/// <list type="bullet">
/// <item>q, k and v as one GEMM over <see cref="QkvWeights"/>;</item>
/// <item>q and k rotated together with the "signed sin" table: rotate_half(x)·sin = flip(x)·signedSin, where flip swaps
/// the halves and signedSin is sin with its first half negated ((−x₂)·s = x₂·(−s) exactly), so the products and the sum
/// round as transformers' do;</item>
/// <item>at decode (one query token) the query heads sharing a K/V head ride along the query-length axis
/// ([B, heads, 1, d] → [B, kv_heads, groups, d]) instead of K/V being repeated for them.</item>
/// </list>
/// <para>
/// The one GEMM needs q/k/v's weights in one tensor. Rather than keep a copy (which would go stale when a researcher edits
/// a weight), q_proj/k_proj/v_proj's parameters are re-pointed (<c>set_</c>, PyTorch's <c>param.data = …</c>) at rows of
/// one fused tensor: the same <c>Parameter</c> objects, so optimizers and references held by the user stay valid, and
/// every in-place write to them (an edit under no_grad, an optimizer step, <c>load_state_dict</c>'s copy) is a write to the
/// fused tensor. When a parameter no longer lives there — a new <c>Parameter</c> was assigned, or <c>module.to(..)</c>
/// replaced it — the next forward fuses again from the parameters as they are. Nothing here can go stale.
/// </para>
/// </summary>
internal sealed class Qwen2FusedAttention(Qwen2Attention attention)
{
    Tensor? _weight, _bias; // [(heads + 2·kv_heads)·d, hidden], [(heads + 2·kv_heads)·d]: q, k, v rows in that order
    // The parameters re-pointed at them (q, k, v weights, then biases) and where each then lay: the same objects still
    // lying there are still views of the fused tensors (a replaced Parameter is another object; .to(..) replaces them).
    (IntPtr Handle, IntPtr Data)[] _views = [];

    /// <summary>
    /// cat(q_proj, k_proj, v_proj) weights and biases: the tensor the projections' parameters are views of, or, when
    /// autograd must reach the parameters (training), their concatenation in the caller's scope.
    /// </summary>
    internal (Tensor Weight, Tensor Bias) QkvWeights()
    {
        Tensor qw = attention.q_proj.weight!, kw = attention.k_proj.weight!, vw = attention.v_proj.weight!;
        Tensor qb = attention.q_proj.bias!, kb = attention.k_proj.bias!, vb = attention.v_proj.bias!;
        if (torch.is_grad_enabled() && new[] { qw, kw, vw, qb, kb, vb }.Any(p => p.requires_grad))
            return (torch.cat([qw, kw, vw], 0), torch.cat([qb, kb, vb], 0));
        if (!HoldsParameters(qw, kw, vw, qb, kb, vb)) Fuse(qw, kw, vw, qb, kb, vb);
        return (_weight!, _bias!);
    }

    bool HoldsParameters(params Tensor[] parameters)
    {
        if (_views.Length != parameters.Length) return false;
        for (int i = 0; i < parameters.Length; i++)
            if (_views[i].Handle != parameters[i].Handle || _views[i].Data != TensorAddress.OrZero(parameters[i])) return false;
        return true;
    }

    void Fuse(Tensor qw, Tensor kw, Tensor vw, Tensor qb, Tensor kb, Tensor vb)
    {
        using var noGrad = torch.no_grad();
        var weight = torch.cat([qw, kw, vw], 0).DetachFromDisposeScope();
        var bias = torch.cat([qb, kb, vb], 0).DetachFromDisposeScope();
        PointAtRows(weight, qw, kw, vw);
        PointAtRows(bias, qb, kb, vb);
        _weight?.Dispose();
        _bias?.Dispose();
        (_weight, _bias) = (weight, bias);
        _views = [.. new[] { qw, kw, vw, qb, kb, vb }.Select(p => (p.Handle, TensorAddress.OrZero(p)))];
    }

    static void PointAtRows(Tensor whole, params Tensor[] parameters)
    {
        long offset = 0;
        foreach (var parameter in parameters)
        {
            using var rows = whole.narrow(0, offset, parameter.shape[0]);
            parameter.set_(rows);
            offset += parameter.shape[0];
        }
    }

    /// <summary><see cref="Qwen2Attention.forward"/>, fast. <paramref name="signedSin"/>: made from <paramref name="sin"/>
    /// when null.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? signedSin, Qwen2KvCache? cache)
    {
        using var scope = torch.NewDisposeScope();
        signedSin ??= RotaryEmbedding.SignedSin(sin);
        int heads = attention.num_heads, kvHeads = attention.num_key_value_heads, headDim = attention.head_dim;
        long batch = x.shape[0], length = x.shape[1];
        long qWidth = (long)heads * headDim, kvWidth = (long)kvHeads * headDim;
        var (weight, bias) = QkvWeights();
        var qkv = FlatLinear.Apply(x, weight, bias); // [B, L, (heads + 2·kv_heads)·d]
        AddAdapterUpdates(qkv, x, qWidth, kvWidth);
        // q and k rotated together: [B, L, heads + kv_heads, d] → [B, heads + kv_heads, L, d]
        var qk = qkv.narrow(-1, 0, qWidth + kvWidth).view(batch, length, heads + kvHeads, headDim).transpose(1, 2);
        var swapped = qk.view(batch, heads + kvHeads, length, 2, headDim / 2).flip(-2).view(batch, heads + kvHeads, length, headDim);
        var rotated = qk * cos;
        rotated.add_(swapped.mul_(signedSin), HeldScalars.One);
        var q = rotated.narrow(1, 0, heads);
        var k = rotated.narrow(1, heads, kvHeads);
        var v = qkv.narrow(-1, qWidth + kvWidth, kvWidth).view(batch, length, kvHeads, headDim).transpose(1, 2);

        long past = cache?.Length ?? 0;
        if (cache is not null) (k, v) = cache.Update(attention.layer_idx, k, v, length);
        int groups = heads / kvHeads;
        Tensor merged;
        if (length == 1)
        {
            // One query token sees every cached key, so only hidden slots need a mask: [B, kv_heads, groups, d] queries.
            var rowMask = cache?.HiddenSlotsMask(past + 1)?.view(batch, 1, 1, past + 1);
            var grouped = q.reshape(batch, kvHeads, groups, headDim);
            merged = nn.functional.scaled_dot_product_attention(grouped, k, v, rowMask).reshape(batch, 1, qWidth);
        }
        else
        {
            var mask = Qwen2Attention.AttentionMask(past, length, x.device, cache, batch);
            // [B, heads, L, d] → [B, L, heads·d]
            merged = attention.SdpaAttentionForward(q, k, v, mask, isCausal: mask is null).transpose(1, 2).reshape(batch, length, qWidth);
        }
        return attention.o_proj.call(merged).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Active LoRA adapters on q/k/v (<see cref="LoraLayer"/>) add their updates to their projection's columns of the fused
    /// output: the fused tensor holds the base weights (with any merged update already in them), so an adapter costs its
    /// own two small GEMMs and the fast path stays the same computation as the plain one.
    /// </summary>
    void AddAdapterUpdates(Tensor qkv, Tensor x, long qWidth, long kvWidth)
    {
        long offset = 0;
        foreach (var (projection, width) in new[] { (attention.q_proj, qWidth), (attention.k_proj, kvWidth), (attention.v_proj, kvWidth) })
        {
            if (LoraLayer.Of(projection) is { Active: true } lora) lora.AddUpdate(qkv.narrow(-1, offset, width), x);
            offset += width;
        }
    }

    /// <summary>Releases the fused tensor (the parameters keep their storage).</summary>
    public void Dispose()
    {
        _weight?.Dispose();
        _bias?.Dispose();
        (_weight, _bias) = (null, null);
        _views = [];
    }
}
