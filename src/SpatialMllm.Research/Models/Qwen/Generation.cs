using SpatialMllm.Research.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Decoding settings with transformers' <c>GenerationConfig</c> meanings and defaults. Sampling-only settings
/// (temperature, top-k, top-p, seed) are ignored when <see cref="DoSample"/> is false, as in transformers.
/// </summary>
/// <param name="TopK">0 disables.</param>
/// <param name="TopP">1 disables.</param>
/// <param name="RepetitionPenalty">Applied over prompt + output ids; 1 disables.</param>
/// <param name="PadTokenId">Written after a sequence has finished while others in the batch continue; null: the first
/// eos id.</param>
/// <param name="Seed">Seeds a private generator for sampling; null: torch's global generator.</param>
/// <param name="RowSeeds">One seed per row of a batch (vLLM's per-request seed): row b samples from its own generator
/// seeded with RowSeeds[b], so its tokens are those it gets generated alone with <c>Seed = RowSeeds[b]</c>, whatever else
/// is in the batch (GRPO rollouts, reproducible batched or not). Overrides <paramref name="Seed"/>.</param>
/// <param name="ReturnStepLogits">Keep each step's raw last-position logits (fp32, before any processing): transformers'
/// <c>output_logits</c>.</param>
/// <param name="ReturnStepScores">Keep each step's processed scores (fp32): the logits after the repetition penalty and,
/// when sampling, temperature, top-k and top-p (−∞ where a token was filtered out) — what the token was chosen from;
/// transformers' <c>output_scores</c>. Each kept step holds [B, vocab] floats on the model's device until the end
/// (Qwen2.5-VL: 151,936 floats, 594 KiB a row a step).</param>
public sealed record GenerationOptions(
    IReadOnlyList<int> EosTokenIds,
    int MaxNewTokens = 1024,
    bool DoSample = false,
    double Temperature = 1.0,
    int TopK = 50,
    double TopP = 1.0,
    double RepetitionPenalty = 1.0,
    int? PadTokenId = null,
    ulong? Seed = null,
    bool ReturnStepLogits = false,
    bool ReturnStepScores = false,
    IReadOnlyList<ulong>? RowSeeds = null)
{
    /// <summary>
    /// What Spatial-MLLM's evaluation ends up running: <c>generate(do_sample=True, temperature=0.1, top_p=0.001)</c>
    /// merged with Qwen2.5-VL-Instruct's generation_config.json (top_k 1, repetition_penalty 1.05), i.e. greedy after
    /// the repetition penalty. Eos ids come from the checkpoint (Qwen2.5-VL: 151645 and 151643).
    /// </summary>
    public static GenerationOptions SpatialMllmEvaluation(IReadOnlyList<int> eosTokenIds, int maxNewTokens = 1024) =>
        new(eosTokenIds, maxNewTokens, DoSample: true, Temperature: 0.1, TopK: 1, TopP: 0.001, RepetitionPenalty: 1.05);
}

public enum GenerationStopReason { EndOfSequence, MaxNewTokens, MaxPositionEmbeddings }

/// <summary>New token ids [B, n] (prompt excluded; eos included) and, when asked for, each step's raw logits and
/// processed scores [B, vocab] (<see cref="GenerationOptions.ReturnStepLogits"/>, <see cref="GenerationOptions.ReturnStepScores"/>).</summary>
public sealed class GenerationResult(Tensor sequences, IReadOnlyList<Tensor> stepLogits, GenerationStopReason stopReason,
    IReadOnlyList<Tensor>? stepScores = null) : IDisposable
{
    public Tensor Sequences { get; } = sequences;
    /// <summary>Step k's raw logits [B, vocab] fp32 (empty unless asked for).</summary>
    public IReadOnlyList<Tensor> StepLogits { get; } = stepLogits;
    /// <summary>Step k's processed scores [B, vocab] fp32, the ones token k was chosen from (empty unless asked for).</summary>
    public IReadOnlyList<Tensor> StepScores { get; } = stepScores ?? [];
    public GenerationStopReason StopReason { get; } = stopReason;

    /// <summary>Every tensor the result holds.</summary>
    internal IEnumerable<Tensor> Tensors => StepLogits.Concat(StepScores).Append(Sequences);

    public void Dispose()
    {
        foreach (var t in Tensors) t.Dispose();
    }
}

/// <summary>
/// transformers' <c>generate</c> for one prefill plus one cached token per step: raw logits → fp32 → repetition
/// penalty → (sampling only) temperature → top-k → top-p → argmax or multinomial; stops when every sequence has
/// produced an eos id or after <c>MaxNewTokens</c>.
/// </summary>
public static class Generation
{
    /// <summary>Text-only prompt: embeds the ids and uses 1D positions.</summary>
    public static GenerationResult Generate(Qwen2CausalLm lm, Tensor inputIds, GenerationOptions options)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long length = inputIds.shape[1];
        var positions = torch.arange(length, ScalarType.Int64, inputIds.device).view(1, 1, length).expand(3, inputIds.shape[0], length);
        var deltas = torch.zeros(inputIds.shape[0], ScalarType.Int64, inputIds.device);
        return Generate(lm, inputIds, lm.model.EmbedTokens(inputIds), positions, deltas, options);
    }

    /// <summary>
    /// Multimodal prompt: <paramref name="inputsEmbeds"/> [B, L, hidden] (visual tokens already scattered in, see
    /// <see cref="Qwen2CausalLm.EmbedWithVisualTokens"/>), <paramref name="positionIds"/> [3, B, L] and
    /// <paramref name="ropeDeltas"/> [B] from <see cref="RopeIndex.Compute"/>. <paramref name="inputIds"/> [B, L] feed
    /// the repetition penalty, as in transformers.
    /// </summary>
    public static GenerationResult Generate(Qwen2CausalLm lm, Tensor inputIds, Tensor inputsEmbeds, Tensor positionIds, Tensor ropeDeltas, GenerationOptions options)
    {
        Validate(options);
        long promptLength = inputIds.shape[1];
        long maxPositions = lm.Config.MaxPositionEmbeddings;
        if (promptLength >= maxPositions)
            throw new ArgumentException(
                $"The prompt has {promptLength} tokens but the model allows {maxPositions} (max_position_embeddings), leaving no room to " +
                "generate. Shorten the question, or use fewer or smaller frames.");
        int maxNew = (int)Math.Min(options.MaxNewTokens, maxPositions - promptLength);
        var cache = lm.FastPath.RentCache(promptLength + maxNew);
        try { return Generate(lm, cache, inputIds, inputsEmbeds, positionIds, ropeDeltas, options, maxNew); }
        finally { lm.FastPath.ReturnCache(cache); }
    }

    /// <summary>
    /// Prompts that begin with the tokens of <paramref name="prefix"/> (a shared prefix of batch 1, e.g. a video's system
    /// prompt and visual tokens, prefilled once; only read here) and go on differently — one question or several — generated
    /// as one batch, each prefilling only its own tokens: the prefix is repeated for every row, each row's remaining tokens are
    /// right-aligned after it with the gap before a shorter one hidden from attention (<see cref="Qwen2KvCache.HideSlots"/>),
    /// and the rows are decoded together, each stopping at its own eos. Per row b: <c>Ids</c> [L_b] and
    /// <c>Positions</c> [3, L_b] of the whole prompt, <c>RopeDelta</c> (from <see cref="RopeIndex.Compute"/>); every row
    /// keeps its own positions (the gap shifts its rope delta), and the repetition penalty sees its own prompt ids (the gap
    /// holds a copy of the prefix's last id, already among them). Sequences come back as [B, n], rows padded after their eos.
    /// <para><paramref name="padRowsTo"/> runs the batch with that many rows (copies of the first, finished from the start,
    /// dropped from the result): a CUDA graph is captured for one batch size, so batches padded to one size reuse the
    /// retained cache's graph instead of capturing anew (vLLM pads to its captured sizes the same way).</para>
    /// </summary>
    internal static GenerationResult GenerateBatch(Qwen2CausalLm lm, Qwen2KvCache prefix, IReadOnlyList<(Tensor Ids, Tensor Positions, long RopeDelta)> rows,
        GenerationOptions options, int padRowsTo = 0)
    {
        Validate(options);
        if (rows.Count == 0) throw new ArgumentException("No prompts to generate from.", nameof(rows));
        int active = rows.Count;
        if (padRowsTo > active) rows = [.. rows, .. Enumerable.Repeat(rows[0], padRowsTo - active)];
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long shared = prefix.Length;
        long[] suffixLengths = [.. rows.Select(r => r.Ids.shape[0] - shared)];
        if (shared <= 0 || suffixLengths.Min() <= 0)
            throw new ArgumentException($"The shared prefix holds {shared} tokens; every prompt must be longer (shortest: {shared + suffixLengths.Min()}).");
        long suffix = suffixLengths.Max(), width = shared + suffix;
        long maxPositions = lm.Config.MaxPositionEmbeddings;
        if (width >= maxPositions)
            throw new ArgumentException(
                $"The longest prompt has {width} tokens but the model allows {maxPositions} (max_position_embeddings), leaving no room to generate.");
        // The padded width bounds every row, as the longest prompt alone would be bounded.
        int maxNew = (int)Math.Min(options.MaxNewTokens, maxPositions - width);
        var device = rows[0].Ids.device;

        var ids = new List<Tensor>();
        var positions = new List<Tensor>();
        var visible = new List<Tensor>();
        var deltas = new long[rows.Count];
        for (int b = 0; b < rows.Count; b++)
        {
            var (rowIds, rowPositions, delta) = rows[b];
            long gap = suffix - suffixLengths[b];
            var prefixIds = rowIds.narrow(0, 0, shared);
            ids.Add(torch.cat([prefixIds, prefixIds.narrow(0, shared - 1, 1).expand(gap), rowIds.narrow(0, shared, suffixLengths[b])]));
            // [3, S]: the gap's slots take the first question token's position (any finite value: they are hidden).
            var rowSuffix = rowPositions.narrow(1, shared, suffixLengths[b]);
            positions.Add(torch.cat([rowSuffix.narrow(1, 0, 1).expand(3, gap), rowSuffix], 1));
            visible.Add(torch.arange(suffix, ScalarType.Int64, device).ge(gap));
            // Decoded tokens sit at cache length + delta: the gap's slots do not count in the row's own sequence.
            deltas[b] = delta - gap;
        }
        var inputIds = torch.stack(ids).to(ScalarType.Int64);                 // [B, shared + S]
        var suffixPositions = torch.stack(positions, 1);                       // [3, B, S]
        var ropeDeltas = torch.tensor(deltas, ScalarType.Int64, device);
        var suffixEmbeds = lm.model.EmbedTokens(inputIds.narrow(1, shared, suffix));
        var cache = lm.FastPath.RentCache(width + maxNew);
        try
        {
            cache.CopyPrefixFrom(prefix, rows.Count);
            if (suffixLengths.Distinct().Count() > 1) cache.HideSlots(shared, torch.stack(visible));
            var result = Generate(lm, cache, inputIds, suffixEmbeds, suffixPositions, ropeDeltas, options, maxNew, active);
            if (active == rows.Count) return result;
            using (result)
            {
                Tensor ActiveRows(Tensor t) => t.narrow(0, 0, active).clone().DetachFromDisposeScope();
                return new GenerationResult(ActiveRows(result.Sequences), [.. result.StepLogits.Select(ActiveRows)], result.StopReason,
                    [.. result.StepScores.Select(ActiveRows)]);
            }
        }
        finally { lm.FastPath.ReturnCache(cache); }
    }

    /// <summary>Prefills <paramref name="inputsEmbeds"/> (the prompt's tokens after the <c>cache.Length</c> cached ones) and
    /// decodes; <paramref name="inputIds"/> are the whole prompt's. Rows from <paramref name="activeRows"/> on (padding)
    /// count as finished from the start.</summary>
    static GenerationResult Generate(Qwen2CausalLm lm, Qwen2KvCache cache, Tensor inputIds, Tensor inputsEmbeds, Tensor positionIds,
        Tensor ropeDeltas, GenerationOptions options, int maxNew, long activeRows = long.MaxValue)
    {
        long batch = inputIds.shape[0], promptLength = inputIds.shape[1];
        var device = inputsEmbeds.device;
        using var outer = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        // Seeded draws come from CPU generators whatever the device (TorchSharp makes no CUDA generator: see SampleSeeded), so a
        // seed samples the same tokens on CPU and CUDA.
        using var generator = options.DoSample && options.RowSeeds is null && options.Seed is { } seed ? new torch.Generator(seed) : null;
        // Per-row generators: rows past RowSeeds (padding, finished from the start) draw nothing.
        var rowGenerators = options.DoSample && options.RowSeeds is { } rowSeeds
            ? rowSeeds.Take((int)Math.Min(batch, Math.Min(activeRows, rowSeeds.Count))).Select(s => new torch.Generator(s)).ToArray()
            : null;
        // Prompt + output ids, preallocated: the repetition penalty reads the filled prefix each step.
        var tokens = torch.cat([inputIds.to(ScalarType.Int64, device), torch.zeros(batch, maxNew, ScalarType.Int64, device)], 1);
        var unfinished = torch.arange(batch, ScalarType.Int64, device).lt(Math.Min(activeRows, batch));
        var eos = torch.tensor(options.EosTokenIds.Select(i => (long)i).ToArray(), device: device);
        long pad = options.PadTokenId ?? options.EosTokenIds[0];
        // A finished row is still fed to the next step (its output is discarded): when the pad id is no token (an eos of
        // −1 meaning "never stop"), it is fed token 0 instead, which the embedding can look up.
        bool padIsToken = pad >= 0 && pad < lm.Config.VocabSize;

        try { return Decode(lm, cache, tokens, inputsEmbeds, positionIds, ropeDeltas, options, maxNew, promptLength, unfinished, eos, pad, padIsToken, generator, rowGenerators); }
        finally { foreach (var g in rowGenerators ?? []) g.Dispose(); }
    }

    static GenerationResult Decode(Qwen2CausalLm lm, Qwen2KvCache cache, Tensor tokens, Tensor inputsEmbeds, Tensor positionIds, Tensor ropeDeltas,
        GenerationOptions options, int maxNew, long promptLength, Tensor unfinished, Tensor eos, long pad, bool padIsToken,
        torch.Generator? generator, torch.Generator[]? rowGenerators)
    {
        var stepLogits = new List<Tensor>();
        var stepScores = new List<Tensor>();
        var logits = lm.forward(inputsEmbeds, positionIds, cache, lastPositionOnly: true);
        int produced = 0;
        var reason = GenerationStopReason.MaxNewTokens;
        while (true)
        {
            using var step = torch.NewDisposeScope();
            var scores = logits.select(1, 0).to(ScalarType.Float32); // [B, vocab]
            if (options.ReturnStepLogits) stepLogits.Add(scores.clone().MoveToOuterDisposeScope());
            scores = LogitsProcessing.Process(scores, tokens.narrow(1, 0, promptLength + produced), options);
            if (options.ReturnStepScores) stepScores.Add(scores.clone().MoveToOuterDisposeScope());
            var next = !options.DoSample ? scores.argmax(-1)
                : generator is null && rowGenerators is null ? torch.multinomial(torch.softmax(scores, -1), 1).squeeze(1)
                : SampleSeeded(scores, generator, rowGenerators);
            var written = torch.where(unfinished, next, torch.full_like(next, pad));
            var fed = padIsToken ? written : torch.where(unfinished, next, torch.zeros_like(next));
            tokens.narrow(1, promptLength + produced, 1).copy_(written.unsqueeze(1));
            produced++;
            Replace(ref unfinished, unfinished.logical_and(torch.isin(written, eos).logical_not()));
            // The one host sync per step: has every sequence stopped?
            if (!unfinished.any().item<bool>()) { reason = GenerationStopReason.EndOfSequence; break; }
            if (produced == maxNew)
            {
                if (maxNew < options.MaxNewTokens) reason = GenerationStopReason.MaxPositionEmbeddings;
                break;
            }
            using (ModelHooks.DecodeStep()) Replace(ref logits, lm.DecodeStep(fed, ropeDeltas, cache));
        }
        var sequences = tokens.narrow(1, promptLength, produced).clone();
        return new GenerationResult(sequences.DetachFromDisposeScope(), [.. stepLogits.Select(t => t.DetachFromDisposeScope())], reason,
            [.. stepScores.Select(t => t.DetachFromDisposeScope())]);
    }

    /// <summary>
    /// One seeded draw per row of <paramref name="scores"/> [B, vocab] by inverse CDF: a uniform per row from the CPU
    /// generator (<paramref name="generator"/>: B of them; <paramref name="rowGenerators"/>: one from row b's own, rows
    /// past them take their argmax: padding), then on the scores' device the first token whose cumulative probability
    /// reaches it. TorchSharp's <c>Generator</c> is always a CPU generator (its native constructor ignores the device),
    /// which libtorch refuses for a CUDA tensor: drawing only the uniforms on the CPU keeps a seed's tokens the same on
    /// CPU and CUDA, and each step to one small copy instead of a vocabulary-sized draw per row on the host.
    /// </summary>
    static Tensor SampleSeeded(Tensor scores, torch.Generator? generator, torch.Generator[]? rowGenerators)
    {
        long rows = rowGenerators?.Length ?? scores.shape[0], vocab = scores.shape[1];
        var next = scores.argmax(-1);
        if (rows == 0) return next;
        var uniforms = rowGenerators is null
            ? torch.rand([rows], ScalarType.Float64, generator: generator)
            : torch.cat([.. rowGenerators.Select(g => torch.rand([1], ScalarType.Float64, generator: g))]);
        var cdf = torch.softmax(scores.narrow(0, 0, rows), -1).to(ScalarType.Float64).cumsum(-1);   // [rows, vocab]
        // In (0, total]: the first index whose cdf reaches it has a non-zero probability and exists.
        var targets = uniforms.to(scores.device).neg_().add_(1).unsqueeze(1).mul_(cdf.narrow(1, vocab - 1, 1));
        next.narrow(0, 0, rows).copy_(torch.searchsorted(cdf, targets).squeeze(1));
        return next;
    }

    /// <summary>Carries a tensor into the next step (the enclosing scope) and frees the one it replaces, so the loop
    /// holds O(1) tensors whatever the number of steps.</summary>
    static void Replace(ref Tensor carried, Tensor value)
    {
        var previous = carried;
        carried = value.MoveToOuterDisposeScope();
        previous.Dispose();
    }

    static void Validate(GenerationOptions options)
    {
        if (options.EosTokenIds.Count == 0) throw new ArgumentException("At least one eos token id is needed.", nameof(options));
        if (options.MaxNewTokens <= 0) throw new ArgumentException("MaxNewTokens must be positive.", nameof(options));
        if (options.RepetitionPenalty <= 0) throw new ArgumentException("RepetitionPenalty must be positive.", nameof(options));
        if (options.DoSample && options.Temperature <= 0) throw new ArgumentException("Temperature must be positive when sampling.", nameof(options));
        if (options.DoSample && (options.TopP <= 0 || options.TopP > 1)) throw new ArgumentException("TopP must be in (0, 1].", nameof(options));
        if (options.TopK < 0) throw new ArgumentException("TopK must be ≥ 0.", nameof(options));
    }
}

/// <summary>transformers' logits processors and warpers in the order <c>generate</c> applies them.</summary>
internal static class LogitsProcessing
{
    /// <summary>scores [B, vocab] fp32, ids [B, n] (prompt + generated so far) → processed scores.</summary>
    public static Tensor Process(Tensor scores, Tensor ids, GenerationOptions options)
    {
        using var scope = torch.NewDisposeScope();
        if (options.RepetitionPenalty != 1.0) scores = RepetitionPenalty(scores, ids, options.RepetitionPenalty);
        if (options.DoSample)
        {
            if (options.Temperature != 1.0) scores = scores / options.Temperature;
            if (options.TopK != 0) scores = TopK(scores, options.TopK);
            if (options.TopP < 1.0) scores = TopP(scores, options.TopP);
        }
        return scores.MoveToOuterDisposeScope();
    }

    /// <summary>Every id already in the sequence: positive logits ÷ penalty, negative × penalty (CTRL).</summary>
    public static Tensor RepetitionPenalty(Tensor scores, Tensor ids, double penalty)
    {
        using var scope = torch.NewDisposeScope();
        var seen = scores.gather(1, ids);
        var penalised = torch.where(seen < 0, seen * penalty, seen / penalty);
        return scores.scatter(1, ids, penalised).MoveToOuterDisposeScope();
    }

    /// <summary>Keeps the scores ≥ the k-th largest (ties kept), the rest −∞.</summary>
    public static Tensor TopK(Tensor scores, int k)
    {
        using var scope = torch.NewDisposeScope();
        k = (int)Math.Min(Math.Max(k, 1), scores.shape[^1]);
        var kth = scores.topk(k).values.narrow(-1, k - 1, 1);
        return scores.masked_fill(scores < kth, float.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>Nucleus: drops the low tail whose cumulative probability is ≤ 1 − p, always keeping the top token.</summary>
    public static Tensor TopP(Tensor scores, double p)
    {
        using var scope = torch.NewDisposeScope();
        var (sorted, indices) = scores.sort(-1, descending: false);
        var cumulative = sorted.softmax(-1).cumsum(-1);
        var remove = cumulative <= (1 - p);
        remove.narrow(-1, remove.shape[^1] - 1, 1).fill_(false);
        var removeByIndex = remove.scatter(1, indices, remove);
        return scores.masked_fill(removeByIndex, float.NegativeInfinity).MoveToOuterDisposeScope();
    }
}
