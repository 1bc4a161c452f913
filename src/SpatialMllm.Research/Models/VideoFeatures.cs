using SpatialMllm.Research.Models.Connector;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models;

/// <summary>
/// The visual tokens of one video, ready to answer any number of questions about it. They are what the encoders, the
/// merger and the connector computed when the video was encoded: the model that encoded them refuses them, saying why,
/// once any of those weights has changed since (an edit, an optimizer step, <c>load_state_dict</c>, a new
/// <c>Parameter</c>) — encode the video again. The KV cache of the prompt's shared prefix kept here is
/// rebuilt whenever the decoder's weights have changed.
/// </summary>
public sealed class VideoFeatures : IDisposable
{
    internal VideoFeatures(Tensor fusedEmbeds, GridThw grid, double secondPerGridT, IReadOnlyList<StageTiming> timings, FusionMode? fusion,
        EncodingOrigin? origin = null)
    {
        FusedEmbeds = fusedEmbeds; Grid = grid; SecondPerGridT = secondPerGridT; Timings = timings; Fusion = fusion; Origin = origin;
    }

    /// <summary>The model that encoded these features and what its encoders' weights were; null for <see cref="FromTensors"/>.</summary>
    internal EncodingOrigin? Origin { get; }

    /// <summary>
    /// Visual tokens made your own way (a custom fusion): <paramref name="fusedEmbeds"/> [merged tokens, hidden] for a
    /// video of patch grid <paramref name="grid"/> whose temporal patches are <paramref name="secondPerGridT"/> seconds
    /// apart (both from <see cref="EncoderOutputs"/>). The features hold their own handle to the tensor: disposing them
    /// leaves yours alone.
    /// </summary>
    public static VideoFeatures FromTensors(Tensor fusedEmbeds, GridThw grid, double secondPerGridT)
    {
        ArgumentNullException.ThrowIfNull(fusedEmbeds);
        if (fusedEmbeds.dim() != 2)
            throw new ArgumentException($"fused embeddings must be [tokens, hidden], got [{string.Join(", ", fusedEmbeds.shape)}].", nameof(fusedEmbeds));
        if (fusedEmbeds.shape[0] * 4 != grid.PatchCount)
            throw new ArgumentException($"fused embeddings have {fusedEmbeds.shape[0]} rows but grid {grid} makes {grid.PatchCount / 4.0} merged tokens (2×2 patches each).", nameof(fusedEmbeds));
        return new VideoFeatures(fusedEmbeds.detach().alias().DetachFromDisposeScope(), grid, secondPerGridT, [], null);
    }

    /// <summary>[merged tokens, hidden] in the model's dtype and device.</summary>
    public Tensor FusedEmbeds { get; }
    public GridThw Grid { get; }
    public double SecondPerGridT { get; }
    public IReadOnlyList<StageTiming> Timings { get; }
    /// <summary>How the library fused the tokens; null for <see cref="FromTensors"/>.</summary>
    public FusionMode? Fusion { get; }
    public int TokenCount => (int)FusedEmbeds.shape[0];

    /// <summary>The KV cache of the prompt's shared prefix (system prompt and visual tokens) for
    /// <see cref="AnswerOptions.SharePrefix"/>; null until a question is answered that way.</summary>
    SharedPrefix? _sharedPrefix;
    readonly Lock _prefixLock = new();

    /// <summary>
    /// The cached prefix of <paramref name="ids"/>[..<paramref name="length"/>] for <paramref name="language"/>; filled
    /// by <paramref name="prefill"/> the first time, and again if another model or prompt prefix asks or the decoder's
    /// weights (<paramref name="weights"/>, read now) are not those it was computed with.
    /// </summary>
    internal Qwen2KvCache PrefixCache(Qwen2CausalLm language, IReadOnlyList<int> ids, int length, Func<WeightsSnapshot> weights, Func<Qwen2KvCache> prefill)
    {
        lock (_prefixLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_sharedPrefix is { } kept && ReferenceEquals(kept.Language, language) && kept.Ids.SequenceEqual(ids.Take(length))
                && kept.Weights.FirstChange(weights()) is null)
                return kept.Cache;
            _sharedPrefix?.Cache.Dispose();
            _sharedPrefix = null;
            var cache = prefill();
            _sharedPrefix = new SharedPrefix(language, ids.Take(length).ToArray(), cache, weights());
            return _sharedPrefix.Cache;
        }
    }

    /// <summary>Whether the shared prefix's KV cache is held (tests; it goes with <see cref="Dispose"/>).</summary>
    internal bool HoldsPrefixCache { get { lock (_prefixLock) return _sharedPrefix is not null; } }

    bool _disposed;

    public void Dispose()
    {
        lock (_prefixLock)
        {
            _disposed = true;
            _sharedPrefix?.Cache.Dispose();
            _sharedPrefix = null;
        }
        FusedEmbeds.Dispose();
    }

    sealed record SharedPrefix(Qwen2CausalLm Language, int[] Ids, Qwen2KvCache Cache, WeightsSnapshot Weights);
}

/// <summary>What <see cref="VideoFeatures"/> were computed from: the model, the connector that fused them and the weights
/// of both encoders and that connector then.</summary>
internal sealed record EncodingOrigin(SpatialMllmModel Model, ISpatialConnector? Connector, WeightsSnapshot Weights);
