using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// A lookup table [vocab, hidden] (key <c>weight</c>). Used instead of TorchSharp's <c>nn.Embedding</c>, which builds
/// its table on the CPU and only then moves it: on the meta device that costs 1.2 GB for Qwen2.5-3B's vocabulary.
/// </summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;

    public TokenEmbedding(long vocabSize, long hiddenSize, Device? device = null, ScalarType? dtype = null) : base(nameof(TokenEmbedding))
    {
        weight = new Parameter(torch.empty([vocabSize, hiddenSize], dtype, device));
        // transformers' _init_weights for embeddings; the checkpoint overwrites it.
        using (torch.no_grad()) nn.init.normal_(weight, 0.0, 0.02);
        RegisterComponents();
    }

    public Tensor Weight => weight;

    /// <summary>ids [...] → [..., hidden].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = torch.NewDisposeScope();
        long[] shape = [.. ids.shape, weight.shape[1]];
        return weight.index_select(0, ids.flatten()).view(shape).MoveToOuterDisposeScope();
    }
}
