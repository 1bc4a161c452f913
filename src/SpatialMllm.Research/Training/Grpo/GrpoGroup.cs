using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training.Grpo;

/// <summary>
/// One question's rollout: its video (decoded once, kept for the loss's forward), the prompt, the K sampled completions
/// (padded ids and mask), their rewards, and the old policy's and reference's per-token log-probabilities when the loss
/// needs them. Owns its tensors.
/// </summary>
public sealed class GrpoGroup : IDisposable
{
    GrpoGroup(GrpoQuestion question, DecodedVideo video, Tensor? spatialTokens, Tensor visualTokens, int[] promptIds,
        IReadOnlyList<GrpoCompletion> completions, Tensor completionIds, Tensor completionMask)
    {
        Question = question; _video = video; SpatialTokens = spatialTokens; VisualTokens = visualTokens; PromptIds = promptIds;
        Completions = completions; CompletionIds = completionIds; CompletionMask = completionMask;
    }

    readonly DecodedVideo _video;

    public GrpoQuestion Question { get; }
    /// <summary>The processor's outputs for the sampled frames (CPU).</summary>
    public QwenVideoInputs Video => _video.Inputs;
    /// <summary>VGGT's connector layer for the frames (frozen: computed once); null without a spatial encoder.</summary>
    public Tensor? SpatialTokens { get; }
    /// <summary>The fused visual tokens the completions were sampled from (no graph).</summary>
    public Tensor VisualTokens { get; }
    /// <summary>The prompt, video pads expanded.</summary>
    public int[] PromptIds { get; }
    public IReadOnlyList<GrpoCompletion> Completions { get; }
    /// <summary>[K, T] int64, right-padded with the first eos id.</summary>
    public Tensor CompletionIds { get; }
    /// <summary>[K, T] float32: 1 for each completion token up to and with its eos; 0 for padding, and for a truncated
    /// completion under mask_truncated_completions.</summary>
    public Tensor CompletionMask { get; }
    /// <summary>[K][reward function], NaN where a function gave no score.</summary>
    public double[][] Rewards { get; internal set; } = [];
    /// <summary>[K, T] under the policy that sampled (num_iterations &gt; 1); null: the loss uses the current log-probs detached.</summary>
    public Tensor? OldLogProbs { get; internal set; }
    /// <summary>[K, T] under the reference (beta ≠ 0).</summary>
    public Tensor? RefLogProbs { get; internal set; }

    /// <summary>The chat GRPO sends: open-r1's system prompt when the R1 format is asked for, then the video and the question.</summary>
    public static IReadOnlyList<ChatMessage> Messages(GrpoQuestion question, GrpoConfig config)
    {
        var user = ChatMessage.User(ChatContent.Video, ChatContent.FromText(question.Prompt));
        return config.ThinkFormat ? [ChatMessage.System(Grpo.Rewards.ThinkSystemPrompt), user] : [user];
    }

    /// <summary>
    /// Decodes the question's video (<see cref="GrpoConfig.Frames"/> uniform frames), encodes it without a graph and samples
    /// <see cref="GrpoConfig.NumGenerations"/> completions from one shared prefix in one batch
    /// (<see cref="SpatialMllmModel.SampleCompletions"/>), completion k seeded with <paramref name="seed"/> + k.
    /// </summary>
    public static GrpoGroup Sample(SpatialMllmModel model, GrpoQuestion question, GrpoConfig config, ulong seed)
    {
        var video = model.DecodeVideo(question.Video, FrameSampler.Uniform(config.Frames));
        Tensor? spatial = null, visual = null;
        try
        {
            var inputs = video.Inputs;
            using (torch.no_grad())
            {
                spatial = model.HasSpatialEncoder ? model.SpatialTokens(inputs.VideoTchw).DetachFromDisposeScope() : null;
                visual = model.EncodeForTraining(inputs.PixelValuesVideos, inputs.Grid, inputs.VideoTchw, spatial).DetachFromDisposeScope();
            }
            using var features = VideoFeatures.FromTensors(visual, inputs.Grid, inputs.SecondPerGridT);
            int[] prompt = model.PromptIds(features, Messages(question, config));
            var eos = model.DefaultGeneration().EosTokenIds;
            var sampling = new GenerationOptions(eos, config.MaxCompletionLength, DoSample: true, Temperature: config.Temperature,
                TopK: config.TopK, TopP: config.TopP, RepetitionPenalty: config.RepetitionPenalty, Seed: seed);
            var answers = model.SampleCompletions(features, prompt, config.NumGenerations, sampling);
            var completions = answers.Select(a => new GrpoCompletion(question, a.Text, a.GeneratedIds,
                Truncated: a.GeneratedIds.Count == 0 || !eos.Contains(a.GeneratedIds[^1]))).ToList();
            int width = completions.Max(c => c.TokenIds.Count), k = completions.Count;
            var ids = new long[k * width];
            var mask = new float[k * width];
            for (int b = 0; b < k; b++)
                for (int j = 0; j < width; j++)
                {
                    bool real = j < completions[b].TokenIds.Count;
                    ids[b * width + j] = real ? completions[b].TokenIds[j] : eos[0];
                    mask[b * width + j] = real && !(config.MaskTruncatedCompletions && completions[b].Truncated) ? 1 : 0;
                }
            return new GrpoGroup(question, video, spatial, visual, prompt, completions,
                torch.tensor(ids, [k, width], device: model.Device).DetachFromDisposeScope(),
                torch.tensor(mask, [k, width], device: model.Device).DetachFromDisposeScope());
        }
        catch
        {
            video.Dispose();
            spatial?.Dispose();
            visual?.Dispose();
            throw;
        }
    }

    /// <summary>Active completion tokens (the mask's sum).</summary>
    public double ActiveTokens => CompletionMask.sum().item<float>();

    public void Dispose()
    {
        _video.Dispose();
        SpatialTokens?.Dispose();
        VisualTokens.Dispose();
        CompletionIds.Dispose();
        CompletionMask.Dispose();
        OldLogProbs?.Dispose();
        RefLogProbs?.Dispose();
    }
}
