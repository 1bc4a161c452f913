using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models;

// Prompts of your own (chat messages, token ids), the likelihood of given answers, and the per-step scores an answer
// carries: what transformers' apply_chat_template + generate(output_scores=True) and a teacher-forced forward give.
public sealed partial class SpatialMllmModel
{
    /// <summary>
    /// Your own chat about the video, tokenised as <see cref="Generate(VideoFeatures, IReadOnlyList{ChatMessage}, AnswerOptions?)"/>
    /// sends it: Qwen2.5-VL's chat template (<see cref="ChatTemplate.Render"/>; the default system prompt when the first
    /// message is not a system one) ending with the assistant turn's start, the video pad expanded to the features'
    /// visual tokens.
    /// </summary>
    /// <param name="messages">System, user and assistant turns; exactly one <see cref="ChatContent.Video"/> item in all
    /// (the features' video), no image.</param>
    public int[] PromptIds(VideoFeatures features, IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(messages);
        var items = messages.SelectMany(m => m?.Content ?? []).ToList();
        int videos = items.Count(c => c is VideoContent), images = items.Count(c => c is ImageContent);
        if (images > 0)
            throw new ArgumentException($"The messages hold {images} image item(s): this model answers about one video (its VideoFeatures), not images.", nameof(messages));
        if (videos != 1)
            throw new ArgumentException($"The messages hold {videos} video items; exactly one (ChatContent.Video) places the features' video in the chat.", nameof(messages));
        var ids = Tokenizer.Encode(ChatTemplate.Render(messages));
        return ChatTemplate.ExpandPads(ids, Config.Tokens.VideoTokenId, [features.TokenCount]);
    }

    /// <summary>
    /// Generates the assistant's reply to your own chat about the video (<see cref="PromptIds(VideoFeatures, IReadOnlyList{ChatMessage})"/>):
    /// a system prompt of your own, earlier turns, the video after the question. The messages
    /// <c>[ChatMessage.User(ChatContent.Video, ChatContent.FromText(question))]</c> give <see cref="Answer(VideoFeatures, string, AnswerOptions?)"/>'s answer.
    /// </summary>
    public Answer Generate(VideoFeatures features, IReadOnlyList<ChatMessage> messages, AnswerOptions? options = null) =>
        AnswerPrompt(features, PromptIds(features, messages), options ?? new AnswerOptions());

    /// <summary>
    /// Generates from your own prompt token ids (the model continues after the last one; end them with
    /// <c>&lt;|im_start|&gt;assistant\n</c> for a chat reply). The video goes where the ids hold
    /// <c>&lt;|vision_start|&gt;</c> then <c>&lt;|video_pad|&gt;</c>: one pad (expanded here to the features' visual
    /// tokens) or the features' count of pads in a row (as <see cref="PromptIds(VideoFeatures, string)"/> gives).
    /// </summary>
    public Answer Generate(VideoFeatures features, IReadOnlyList<int> promptIds, AnswerOptions? options = null) =>
        AnswerPrompt(features, VideoPrompt(features, promptIds), options ?? new AnswerOptions());

    /// <summary>
    /// How likely the model finds each candidate answer to a question about the video — multiple-choice scoring, as
    /// lm-evaluation-harness' <c>loglikelihood</c>: each candidate's tokens teacher-forced after the prompt
    /// <see cref="Answer(VideoFeatures, string, AnswerOptions?)"/> sends (<see cref="PromptIds(VideoFeatures, string)"/>, which ends at the assistant turn's
    /// start), each token scored by log_softmax (float32) of the model's raw logits — the model's own distribution, with
    /// no repetition penalty, temperature or truncation. A candidate is tokenised on its own (the prompt ends in a
    /// newline, so its tokens are those it would have in the reply) and scored without an end of turn: append
    /// <c>&lt;|im_end|&gt;</c> to score "this and nothing more".
    /// <para>As for <see cref="Answer(VideoFeatures, string, AnswerOptions?)"/>, the video prefix comes from the features' shared-prefix cache and the candidates
    /// run as batches of at most <see cref="AnswerOptions.BatchSize"/> rows, one forward each. With a hook set or
    /// <see cref="AnswerOptions.SharePrefix"/> off, each candidate is one forward of the whole prompt, which hooks see
    /// whole (that forward computes the logits of every prompt position: prompt length × vocab values).</para>
    /// </summary>
    /// <returns>One result per candidate, in order.</returns>
    public IReadOnlyList<AnswerLikelihood> LogLikelihood(VideoFeatures features, string question, IReadOnlyList<string> candidates,
        AnswerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var tokens = candidates.Select((c, i) => c is null
            ? throw new ArgumentException($"Candidate {i} is null.", nameof(candidates))
            : Tokenizer.Encode(c).ToArray()).ToList();
        var logProbs = ContinuationLogProbs(features, PromptIds(features, question), tokens, options ?? new AnswerOptions());
        return [.. candidates.Select((c, i) => new AnswerLikelihood(c, tokens[i], logProbs[i]))];
    }

    /// <summary>
    /// <see cref="LogLikelihood(VideoFeatures, string, IReadOnlyList{string}, AnswerOptions?)"/> of token ids after
    /// your own prompt ids (the video placed as for <see cref="Generate(VideoFeatures, IReadOnlyList{int}, AnswerOptions?)"/>),
    /// e.g. an answer's <see cref="Answer.GeneratedIds"/> after <see cref="PromptIds(VideoFeatures, string)"/>.
    /// </summary>
    public IReadOnlyList<AnswerLikelihood> LogLikelihood(VideoFeatures features, IReadOnlyList<int> promptIds,
        IReadOnlyList<IReadOnlyList<int>> continuations, AnswerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(continuations);
        var tokens = continuations.Select((c, i) => c?.ToArray() ?? throw new ArgumentException($"Continuation {i} is null.", nameof(continuations))).ToList();
        var logProbs = ContinuationLogProbs(features, VideoPrompt(features, promptIds), tokens, options ?? new AnswerOptions());
        return [.. tokens.Select((t, i) => new AnswerLikelihood(null, t, logProbs[i]))];
    }

    /// <summary>
    /// Your prompt ids with the video pads checked (and a single one expanded): a <c>&lt;|vision_start|&gt;</c> directly
    /// before them (M-RoPE finds the video by it), one pad or the features' count in a row, no image pads, every id in
    /// the vocabulary.
    /// </summary>
    int[] VideoPrompt(VideoFeatures features, IReadOnlyList<int> promptIds)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(promptIds);
        var tokens = Config.Tokens;
        CheckVocabulary(promptIds, nameof(promptIds));
        int images = promptIds.Count(id => id == tokens.ImageTokenId);
        if (images > 0)
            throw new ArgumentException($"promptIds hold {images} <|image_pad|> ({tokens.ImageTokenId}): this model answers about one video (its VideoFeatures), not images.", nameof(promptIds));
        int first = promptIds.ToList().IndexOf(tokens.VideoTokenId), pads = promptIds.Count(id => id == tokens.VideoTokenId);
        string placement = $"the video goes in as <|vision_start|> ({tokens.VisionStartTokenId}) then one <|video_pad|> ({tokens.VideoTokenId}), " +
                           $"expanded here to the features' {features.TokenCount} visual tokens, or {features.TokenCount} of them in a row";
        if (pads == 0) throw new ArgumentException($"promptIds hold no <|video_pad|>: {placement}.", nameof(promptIds));
        if (first == 0 || promptIds[first - 1] != tokens.VisionStartTokenId)
            throw new ArgumentException($"promptIds have no <|vision_start|> directly before the first <|video_pad|> (position {first}): {placement}.", nameof(promptIds));
        if (pads == 1) return ChatTemplate.ExpandPads(promptIds, tokens.VideoTokenId, [features.TokenCount]);
        if (pads != features.TokenCount || promptIds.Skip(first).Take(pads).Any(id => id != tokens.VideoTokenId))
            throw new ArgumentException($"promptIds hold {pads} <|video_pad|>{(pads == features.TokenCount ? " not in one run" : "")}: {placement}.", nameof(promptIds));
        return [.. promptIds];
    }

    void CheckVocabulary(IReadOnlyList<int> ids, string argument, string what = "promptIds")
    {
        int vocab = Config.Text.VocabSize;
        for (int i = 0; i < ids.Count; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                throw new ArgumentException($"{what}[{i}] = {ids[i]} is not a token id (the vocabulary has {vocab}).", argument);
    }

    /// <summary>input_ids [1, L], inputs_embeds (the visual tokens scattered in), M-RoPE position ids [3, 1, L] and rope
    /// delta [1] of a whole prompt, each through its hook point.</summary>
    (Tensor InputIds, Tensor Embeds, Tensor Positions, Tensor Deltas) WholePromptInputs(IReadOnlyList<int> ids, VideoFeatures features)
    {
        var inputIds = Hooks.Run("input_ids", torch.tensor(ids.Select(i => (long)i).ToArray(), device: Device).unsqueeze(0));
        var embeds = Hooks.Run("inputs_embeds",
            Language.EmbedWithVisualTokens(inputIds, VisualTokens(features), Config.Tokens.VideoTokenId));
        var (positions, deltas) = RopePositions(inputIds, features);
        return (inputIds, embeds, Hooks.Run("position_ids", positions), deltas);
    }

    /// <summary>Row <paramref name="row"/> of the first <paramref name="count"/> steps [B, vocab] as float32 arrays; null
    /// when the steps were not kept.</summary>
    static IReadOnlyList<float[]>? RowSteps(IReadOnlyList<Tensor> steps, int row, int count)
    {
        if (steps.Count == 0) return null;
        using var scope = torch.NewDisposeScope();
        return [.. steps.Take(count).Select(step => step[row].to(ScalarType.Float32).cpu().data<float>().ToArray())];
    }

    /// <summary>Per continuation, log p(token | prompt, the tokens before it) for each of its tokens.</summary>
    double[][] ContinuationLogProbs(VideoFeatures features, int[] prompt, IReadOnlyList<int[]> continuations, AnswerOptions options)
    {
        if (options.BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.BatchSize, "AnswerOptions.BatchSize must be at least 1.");
        long maxPositions = Config.Text.MaxPositionEmbeddings;
        for (int i = 0; i < continuations.Count; i++)
        {
            if (continuations[i].Length == 0)
                throw new ArgumentException($"Candidate {i} has no tokens: there is nothing to score.", nameof(continuations));
            CheckVocabulary(continuations[i], nameof(continuations), $"candidate {i}");
            if (prompt.Length + continuations[i].Length > maxPositions)
                throw new ArgumentException($"Candidate {i} makes {prompt.Length + continuations[i].Length} tokens with the prompt; the model allows {maxPositions} (max_position_embeddings).",
                    nameof(continuations));
        }
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        // As generation decides: hooks see the whole prompt, so with one set nothing is shared.
        if (options.SharePrefix && !Hooks.Any && SharedPrefixLength(prompt) is > 0 and var shared && shared < prompt.Length)
            return [.. continuations.Chunk(options.BatchSize).SelectMany(batch => AfterSharedPrefix(features, prompt, batch, shared))];
        return [.. continuations.Select(c => WholePrompt(features, prompt, c))];
    }

    /// <summary>
    /// One forward of a batch of continuations after the features' shared-prefix cache: each row holds the prompt's tokens
    /// after the prefix, then its continuation, then (shorter rows) padding, which no real token sees (attention is causal).
    /// Continuation tokens sit where generation puts its tokens: one position after another from the prompt's end.
    /// </summary>
    IEnumerable<double[]> AfterSharedPrefix(VideoFeatures features, int[] prompt, int[][] batch, int shared)
    {
        using var scope = torch.NewDisposeScope();
        var promptIds = torch.tensor(prompt.Select(i => (long)i).ToArray(), device: Device).unsqueeze(0);
        var (promptPositions, deltas) = RopePositions(promptIds, features);
        var prefix = SharedPrefixCache(features, prompt, promptIds, promptPositions, shared);

        int rows = batch.Length, ownPrompt = prompt.Length - shared, longest = batch.Max(c => c.Length);
        long width = ownPrompt + longest;
        var ids = new long[rows * width];
        for (int b = 0; b < rows; b++)
            for (int j = 0; j < width; j++)
                ids[b * width + j] = j < ownPrompt ? prompt[shared + j] : batch[b][Math.Min(j - ownPrompt, batch[b].Length - 1)];
        long next = prompt.Length + deltas[0].item<long>();
        var positions = torch.cat(
        [
            promptPositions.narrow(2, shared, ownPrompt).expand(3, rows, ownPrompt),
            torch.arange(next, next + longest, ScalarType.Int64, Device).view(1, 1, longest).expand(3, rows, longest),
        ], 2);
        var inputIds = torch.tensor(ids, [rows, width], device: Device);
        using var cache = new Qwen2KvCache(Config.Text.NumHiddenLayers, shared + width);
        cache.CopyPrefixFrom(prefix, rows);
        var logits = Language.forward(Language.model.EmbedTokens(inputIds), positions, cache);   // [rows, width, vocab]
        // Token j of a continuation is predicted at the position before it: the prompt's last token for j = 0.
        var targets = inputIds.narrow(1, ownPrompt, longest).unsqueeze(-1);
        var logProbs = TokenLogProbs(logits.narrow(1, ownPrompt - 1, longest), targets);
        return [.. batch.Select((c, b) => logProbs.Skip(b * longest).Take(c.Length).Select(p => (double)p).ToArray())];
    }

    /// <summary>One forward of the whole prompt and the continuation, through the hooks, as generation without sharing.</summary>
    double[] WholePrompt(VideoFeatures features, int[] prompt, int[] continuation)
    {
        using var scope = torch.NewDisposeScope();
        var (_, embeds, positions, _) = WholePromptInputs([.. prompt, .. continuation], features);
        var logits = Language.forward(embeds, positions);   // [1, L, vocab]
        var targets = torch.tensor(continuation.Select(i => (long)i).ToArray(), device: Device).view(1, -1, 1);
        return [.. TokenLogProbs(logits.narrow(1, prompt.Length - 1, continuation.Length), targets).Select(p => (double)p)];
    }

    /// <summary>log_softmax (float32) of logits [B, n, vocab] at targets [B, n, 1] → the B·n values, row by row.</summary>
    static float[] TokenLogProbs(Tensor logits, Tensor targets)
    {
        using var scope = torch.NewDisposeScope();
        return logits.to(ScalarType.Float32).log_softmax(-1).gather(-1, targets).cpu().data<float>().ToArray();
    }
}
