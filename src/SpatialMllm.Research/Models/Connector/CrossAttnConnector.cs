using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Connector;

/// <summary>
/// Experimental. The <c>cross_attn</c> connector (<c>connector.</c>), which the reference names
/// (<c>SpatialMLLMCrossAttnConnector(clip_dim, vggt_dim, language_dim, num_heads=8, attention_dropout=0, mlp_ratio=4,
/// hidden_act="gelu", bias=False)</c>) but does not ship. Our reading: a pre-norm cross-attention block in which every
/// vision token queries the VGGT patch tokens of all frames (special tokens dropped), then an MLP:
/// <code>
/// x = vision + o_proj(attention(q_proj(q_norm(vision)), k_proj(kv_norm(s)), v_proj(kv_norm(s))))
/// x = x + mlp.fc2(act(mlp.fc1(mlp_norm(x))))
/// fused = proj(x)   (only when clip_dim ≠ language_dim)
/// </code>
/// Attention dropout is a training setting and is not applied here.
/// </summary>
public sealed class CrossAttnConnector : nn.Module, ISpatialConnector
{
    readonly int _clipDim, _spatialDim, _numHeads;
    readonly string _act;

    public readonly Qwen2RmsNorm q_norm;
    public readonly Qwen2RmsNorm kv_norm;
    public readonly Linear q_proj;
    public readonly Linear k_proj;
    public readonly Linear v_proj;
    public readonly Linear o_proj;
    public readonly Qwen2RmsNorm mlp_norm;
    public readonly CrossAttnMlp mlp;
    public readonly Linear? proj;

    /// <param name="clipDim">The vision token width (vision_config.out_hidden_size).</param>
    /// <param name="spatialDim">Channels per VGGT token (2 × embed_dim).</param>
    /// <param name="languageDim">The LLM hidden size.</param>
    public CrossAttnConnector(int clipDim, int spatialDim, int languageDim, int numHeads = 8, double mlpRatio = 4,
        string hiddenAct = "gelu", bool bias = false, Device? device = null, ScalarType? dtype = null) : base(nameof(CrossAttnConnector))
    {
        if (clipDim % numHeads != 0) throw new ArgumentException($"cross_attn: clip_dim {clipDim} is not a multiple of num_heads {numHeads}.");
        if (hiddenAct is not ("gelu" or "silu" or "relu")) throw new NotSupportedException($"cross_attn: hidden_act '{hiddenAct}' is not supported (gelu, silu, relu).");
        (_clipDim, _spatialDim, _numHeads, _act) = (clipDim, spatialDim, numHeads, hiddenAct);
        q_norm = new Qwen2RmsNorm(clipDim, 1e-6, device, dtype);
        kv_norm = new Qwen2RmsNorm(spatialDim, 1e-6, device, dtype);
        q_proj = nn.Linear(clipDim, clipDim, bias, device, dtype);
        k_proj = nn.Linear(spatialDim, clipDim, bias, device, dtype);
        v_proj = nn.Linear(spatialDim, clipDim, bias, device, dtype);
        o_proj = nn.Linear(clipDim, clipDim, bias, device, dtype);
        mlp_norm = new Qwen2RmsNorm(clipDim, 1e-6, device, dtype);
        mlp = new CrossAttnMlp(clipDim, (int)Math.Round(clipDim * mlpRatio), bias, device, dtype);
        proj = clipDim == languageDim ? null : nn.Linear(clipDim, languageDim, bias, device, dtype);
        RegisterComponents();
    }

    public Tensor forward(Tensor visionEmbeds, Tensor spatialTokens, int patchStartIndex, GridThw grid)
    {
        using var scope = torch.NewDisposeScope();
        if (visionEmbeds.dim() != 2 || visionEmbeds.shape[1] != _clipDim)
            throw new ArgumentException($"cross_attn expects vision embeddings [N, {_clipDim}], got [{string.Join(", ", visionEmbeds.shape)}].");
        if (spatialTokens.dim() != 3 || spatialTokens.shape[2] != _spatialDim || spatialTokens.shape[1] - patchStartIndex != (long)grid.H * grid.W)
            throw new ArgumentException($"cross_attn expects spatial tokens [S, {patchStartIndex}+{grid.H}·{grid.W}, {_spatialDim}] for grid {grid}, " +
                                        $"got [{string.Join(", ", spatialTokens.shape)}].");
        long n = visionEmbeds.shape[0], headDim = _clipDim / _numHeads;
        var x = visionEmbeds.to(q_norm.DType);
        var keysIn = kv_norm.forward(spatialTokens.narrow(1, patchStartIndex, spatialTokens.shape[1] - patchStartIndex)
            .reshape(-1, _spatialDim).to(kv_norm.DType));                                               // [S·P, spatial]
        long m = keysIn.shape[0];
        // [rows, clip] → [1, heads, rows, head_dim]
        Tensor Heads(Tensor t, long rows) => t.view(1, rows, _numHeads, headDim).transpose(1, 2);
        var q = Heads(q_proj.call(q_norm.forward(x)), n);
        var k = Heads(k_proj.call(keysIn), m);
        var v = Heads(v_proj.call(keysIn), m);
        var attended = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, _clipDim);
        x = x + o_proj.call(attended);
        x = x + mlp.forward(mlp_norm.forward(x), _act);
        return (proj is null ? x : proj.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>The cross-attention connector's MLP (<c>mlp.fc1</c>, <c>mlp.fc2</c>).</summary>
public sealed class CrossAttnMlp : nn.Module
{
    public readonly Linear fc1;
    public readonly Linear fc2;

    public CrossAttnMlp(int dim, int hidden, bool bias, Device? device = null, ScalarType? dtype = null) : base(nameof(CrossAttnMlp))
    {
        fc1 = nn.Linear(dim, hidden, bias, device, dtype);
        fc2 = nn.Linear(hidden, dim, bias, device, dtype);
        RegisterComponents();
    }

    public Tensor forward(Tensor x, string activation)
    {
        using var scope = torch.NewDisposeScope();
        var h = fc1.call(x);
        h = activation switch { "gelu" => nn.functional.gelu(h), "silu" => nn.functional.silu(h), _ => nn.functional.relu(h) };
        return fc2.call(h).MoveToOuterDisposeScope();
    }
}
