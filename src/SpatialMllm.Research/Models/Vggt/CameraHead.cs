using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// VGGT's camera head: the camera tokens of the last aggregator layer, refined iteratively by a transformer trunk
/// with adaptive-LayerNorm modulation from the previous estimate, giving an <c>absT_quaR_FoV</c> pose encoding
/// [T(3), quaternion(4), fov_h, fov_w] per frame.
/// </summary>
public sealed class CameraHead : nn.Module
{
    public const int PoseEncodingDim = 9;

    public readonly ModuleList<VggtBlock> trunk;
    public readonly LayerNorm token_norm;
    public readonly LayerNorm trunk_norm;
    public readonly Parameter empty_pose_tokens;   // [1, 1, 9]: the "previous estimate" of the first iteration
    public readonly Linear embed_pose;
    public readonly Sequential poseLN_modulation;  // SiLU, Linear(dim, 3·dim)
    public readonly LayerNorm adaln_norm;          // no affine parameters, eps 1e-6
    public readonly VggtMlp pose_branch;

    public CameraHead(int dimIn, CameraHeadConfig config, double mlpRatio = 4.0, Device? device = null, ScalarType? dtype = null)
        : base(nameof(CameraHead))
    {
        trunk = nn.ModuleList(Enumerable.Range(0, config.TrunkDepth)
            .Select(_ => new VggtBlock(dimIn, config.NumHeads, mlpRatio, 1e-5, qkNorm: false, device, dtype)).ToArray());
        token_norm = nn.LayerNorm(dimIn, device: device, dtype: dtype);
        trunk_norm = nn.LayerNorm(dimIn, device: device, dtype: dtype);
        empty_pose_tokens = nn.Parameter(torch.zeros([1, 1, PoseEncodingDim], dtype: dtype, device: device));
        embed_pose = nn.Linear(PoseEncodingDim, dimIn, device: device, dtype: dtype);
        poseLN_modulation = nn.Sequential(("0", nn.SiLU()), ("1", nn.Linear(dimIn, 3 * dimIn, device: device, dtype: dtype)));
        adaln_norm = nn.LayerNorm(dimIn, eps: 1e-6, elementwise_affine: false, device: device, dtype: dtype);
        pose_branch = new VggtMlp(dimIn, dimIn / 2, PoseEncodingDim, device, dtype);
        RegisterComponents();
    }

    /// <summary>
    /// Last aggregator layer [B, S, P', 2D] (VGGT's <c>aggregated_tokens_list[-1]</c>: concat of the last frame and
    /// global blocks' outputs; only the camera tokens, index 0 of each frame, are read) → pose encoding [B, S, 9] after
    /// <paramref name="iterations"/> refinement steps (VGGT's <c>num_iterations</c>, 4; it reports the last).
    /// </summary>
    public Tensor forward(Tensor lastLayerTokens, int iterations = 4)
    {
        using var scope = torch.NewDisposeScope();
        var encodings = ForwardIterations(lastLayerTokens, iterations);
        return encodings[^1].MoveToOuterDisposeScope();
    }

    /// <summary>
    /// VGGT's <c>pred_pose_enc_list</c>: the activated pose encoding [B, S, 9] after each of the
    /// <paramref name="iterations"/> refinement steps, which its camera loss weighs (later steps more). As in VGGT, each
    /// step starts from the previous estimate detached, so gradients do not flow from one step into the next.
    /// </summary>
    public IReadOnlyList<Tensor> ForwardIterations(Tensor lastLayerTokens, int iterations = 4)
    {
        if (iterations < 1) throw new ArgumentOutOfRangeException(nameof(iterations), "Run at least one iteration.");
        using var scope = torch.NewDisposeScope();
        var poseTokens = token_norm.forward(lastLayerTokens.to(empty_pose_tokens.dtype)[.., .., 0]);   // [B, S, C]
        long b = poseTokens.shape[0], s = poseTokens.shape[1];
        var normalized = adaln_norm.forward(poseTokens);
        Tensor? poseEncoding = null;
        var encodings = new List<Tensor>(iterations);
        for (int i = 0; i < iterations; i++)
        {
            var previous = poseEncoding?.detach() ?? empty_pose_tokens.expand(b, s, -1);
            var modulation = poseLN_modulation.forward(embed_pose.call(previous)).chunk(3, dim: -1);
            Tensor shift = modulation[0], scale = modulation[1], gate = modulation[2];
            // DiT-style modulate: gate · (norm(x)·(1 + scale) + shift), plus the residual x.
            var h = gate * (normalized * (1 + scale) + shift) + poseTokens;
            foreach (var block in trunk) h = block.forward(h);
            var delta = pose_branch.forward(trunk_norm.forward(h));
            poseEncoding = poseEncoding is null ? delta : poseEncoding.detach() + delta;
            encodings.Add(ActivatePose(poseEncoding));
        }
        foreach (var encoding in encodings) encoding.MoveToOuterDisposeScope();
        return encodings;
    }

    /// <summary>VGGT's activations: translation and quaternion linear, field of view ReLU (kept positive).</summary>
    static Tensor ActivatePose(Tensor poseEncoding)
    {
        using var scope = torch.NewDisposeScope();
        var translationAndQuaternion = poseEncoding[.., .., ..7];
        var fieldOfView = nn.functional.relu(poseEncoding[.., .., 7..]);
        return torch.cat([translationAndQuaternion, fieldOfView], dim: -1).MoveToOuterDisposeScope();
    }
}
