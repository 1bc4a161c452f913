using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// M-RoPE cos/sin: position ids carry three streams (t, h, w); the rotary half-dimensions are split into
/// <c>mrope_section</c> chunks and chunk k takes its angle from stream k. (transformers computes all three streams over
/// the full width and selects chunks of emb = cat(freqs, freqs) with the section list doubled; selecting before the
/// duplication is the same thing.) Angles in fp32, then cast to the activation dtype, as transformers does.
/// </summary>
public sealed class MultimodalRotaryEmbedding
{
    readonly int _headDim;
    readonly double _theta;
    readonly IReadOnlyList<int> _section;
    Tensor? _invFreq;

    public MultimodalRotaryEmbedding(int headDim, double theta, IReadOnlyList<int> mropeSection)
    {
        if (mropeSection.Count != 3 || mropeSection.Sum() != headDim / 2)
            throw new ArgumentException($"mrope_section [{string.Join(", ", mropeSection)}] must have 3 entries summing to head_dim/2 = {headDim / 2}.");
        _headDim = headDim;
        _theta = theta;
        _section = mropeSection;
    }

    /// <summary>position_ids [3, B, L] (t, h, w streams; see <see cref="RopeIndex"/>) → (cos, sin) [B, 1, L, head_dim]
    /// in <paramref name="dtype"/>, already mixed by <c>mrope_section</c> as <c>apply_multimodal_rotary_pos_emb</c> does.</summary>
    public (Tensor Cos, Tensor Sin) forward(Tensor positionIds, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var invFreq = InverseFrequencies(positionIds.device);
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq; // [3, B, L, head_dim/2]
        var chunks = new Tensor[3];
        for (int stream = 0, offset = 0; stream < 3; offset += _section[stream], stream++)
            chunks[stream] = freqs[stream].narrow(-1, offset, _section[stream]);
        var mixed = torch.cat(chunks, -1);
        var emb = torch.cat([mixed, mixed], -1).unsqueeze(1);
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary><c>mrope_section</c>: how many rotary frequencies each of the t, h, w streams drives.</summary>
    public IReadOnlyList<int> Section => _section;

    /// <summary>Cached per device, outside any dispose scope (see <see cref="RotaryEmbedding.InverseFrequencies"/>).</summary>
    internal Tensor InverseFrequencies(Device device)
    {
        if (_invFreq is null || _invFreq.device_type != device.type || _invFreq.device_index != device.index)
        {
            _invFreq?.Dispose();
            _invFreq = RotaryEmbedding.InverseFrequencies(_headDim, _theta, device).DetachFromDisposeScope();
        }
        return _invFreq;
    }
}
