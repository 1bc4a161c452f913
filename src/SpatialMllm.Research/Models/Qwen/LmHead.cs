using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// The LM head: a bias-free Linear (key <c>weight</c> [vocab, hidden]) whose weight may be another module's Parameter —
/// with <c>tie_word_embeddings</c>, <c>model.embed_tokens.weight</c> itself, as in transformers. Unlike TorchSharp's
/// <c>Linear</c>, assigning a new <c>weight</c> (untying, as <c>lm_head.weight = nn.Parameter(...)</c> does in PyTorch)
/// does not dispose the one it replaces, which may still be the embedding's.
/// </summary>
public sealed class LmHead : nn.Module<Tensor, Tensor>
{
    Parameter _weight;

    public LmHead(Parameter weight) : base(nameof(LmHead))
    {
        _weight = weight;
        ConditionallyRegisterParameter(nameof(weight), weight);
    }

    /// <summary>[vocab, hidden].</summary>
    public Parameter weight
    {
        get => _weight;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            _weight = value;
            ConditionallyRegisterParameter(nameof(weight), value);
        }
    }

    /// <summary>hidden [..., hidden] → logits [..., vocab].</summary>
    public override Tensor forward(Tensor hidden) => nn.functional.linear(hidden, _weight);
}
