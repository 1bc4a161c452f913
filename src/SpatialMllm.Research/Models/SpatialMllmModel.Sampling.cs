using System.Diagnostics;
using SpatialMllm.Research.Models.Qwen;

namespace SpatialMllm.Research.Models;

// Several sampled completions of one prompt about a video: reinforcement learning's rollouts (GRPO's group).
public sealed partial class SpatialMllmModel
{
    /// <summary>
    /// <paramref name="count"/> completions of one prompt about the video (ids as <see cref="PromptIds(VideoFeatures, string)"/>
    /// or <see cref="PromptIds(VideoFeatures, IReadOnlyList{Text.ChatMessage})"/> give them), sampled as one batch after the
    /// features' shared prefix (prefilled once; the prompt's own tokens prefilled together; decoded together, each row
    /// stopping at its own eos or after <see cref="GenerationOptions.MaxNewTokens"/>). Row b samples from its own generator,
    /// seeded with <c>RowSeeds[b]</c>, or <c>Seed + b</c> when only <see cref="GenerationOptions.Seed"/> is set, so the
    /// completions are reproducible and each is the one <see cref="Generate(VideoFeatures, IReadOnlyList{int}, AnswerOptions?)"/>
    /// samples alone with that seed. With <paramref name="batched"/> false (or a hook set) they are sampled one at a time.
    /// </summary>
    public IReadOnlyList<Answer> SampleCompletions(VideoFeatures features, IReadOnlyList<int> promptIds, int count, GenerationOptions sampling,
        bool batched = true)
    {
        ArgumentNullException.ThrowIfNull(sampling);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "At least one completion is needed.");
        if (!sampling.DoSample) throw new ArgumentException("SampleCompletions samples: set DoSample (with Temperature, TopP, Seed) in the options.", nameof(sampling));
        ulong baseSeed = sampling.Seed ?? (ulong)Random.Shared.NextInt64();
        IReadOnlyList<ulong> seeds = sampling.RowSeeds is { } given
            ? given.Count == count ? given : throw new ArgumentException($"RowSeeds has {given.Count} seeds for {count} completions.", nameof(sampling))
            : [.. Enumerable.Range(0, count).Select(b => baseSeed + (ulong)b)];
        int[] prompt = VideoPrompt(features, promptIds);
        int shared = SharedPrefixLength(prompt);
        if (!batched || count == 1 || Hooks.Any || shared == 0 || shared >= prompt.Length)
            return [.. seeds.Select(seed => AnswerPrompt(features, prompt, new AnswerOptions(Generation: sampling with { RowSeeds = [seed] })))];

        var clock = Stopwatch.StartNew();
        var generation = sampling with { RowSeeds = seeds };
        var prompts = Enumerable.Repeat(prompt, count).ToList();
        using var result = GenerateBatch(prompts, shared, features, generation);
        Synchronize();
        var timing = new StageTiming($"sample ({count} completions)", clock.Elapsed.TotalMilliseconds / count);
        return RowAnswers(result, prompts, features, generation, timing);
    }
}
