using static TorchSharp.torch;

namespace SpatialMllm.Research.Modules;

/// <summary>What the checkpointed segments (<c>CheckpointedDecoderLayer</c>, <c>CheckpointedVggtBlock</c>) share.</summary>
internal static class CheckpointSegment
{
    /// <summary>
    /// <paramref name="x"/>, made to require grad when it does not. A reentrant checkpoint (torch.utils.checkpoint's
    /// <c>use_reentrant=True</c>, the form TorchSharp's autograd functions give) records its backward only when an
    /// input requires grad; a segment whose parameters train behind a frozen input (LoRA behind frozen embeddings,
    /// VGGT's last blocks behind frozen earlier ones) would otherwise get no backward at all — what transformers'
    /// <c>enable_input_require_grads</c> does for PEFT. A detached view: no copy, and the input's own gradient is
    /// dropped.
    /// </summary>
    public static Tensor Input(Tensor x) => x.requires_grad ? x : x.detach().requires_grad_(true);
}
