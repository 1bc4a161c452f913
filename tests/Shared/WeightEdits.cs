using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.TestSupport;

/// <summary>The ways the decoder can run.</summary>
public enum DecoderPath
{
    /// <summary>transformers' eager attention, eager decode, whole prompt prefilled.</summary>
    EagerAttention,
    /// <summary>transformers' SDPA attention, eager decode.</summary>
    Sdpa,
    /// <summary>The fused q/k/v attention (default), eager decode.</summary>
    Fused,
    /// <summary>The fused attention and the TorchScript decode step (the CUDA graph's script).</summary>
    Scripted,
    /// <summary>The KV cache of the shared prefix (system prompt + video), kept with the features.</summary>
    SharedPrefix,
    /// <summary>Two questions answered as one batch after the shared prefix.</summary>
    Batched,
    /// <summary>The TorchScript step captured as a CUDA graph (CUDA only), after the shared prefix.</summary>
    CudaGraph,
    /// <summary>Two questions as one batch under the CUDA graph (CUDA only).</summary>
    BatchedCudaGraph,
}

/// <summary>The idioms of issue 22, each changing the decoder's weights.</summary>
public enum DecoderEdit { MulInPlace, CopyInPlace, AdamWStep, LoadStateDict, NewParameter, ToDtypeAndBack, MlpInPlace, TiedHeadInPlace }

/// <summary>
/// The weight-edit contract's harness, shared by the CPU tests and the GPU tests: an idiom applied to a model, the step
/// logits of a path, and a freshly loaded model carrying an edited model's weights.
/// </summary>
internal static class WeightEdits
{
    public const string Question = "How many chairs are in this room?";
    static readonly string[] BatchQuestions = [Question, "What is the distance between the table and the sofa in meters?"];

    /// <summary>A model loaded by <paramref name="load"/>, then given <paramref name="edited"/>'s weights before it ever ran.</summary>
    public static SpatialMllmModel FreshCopyOf(SpatialMllmModel edited, Func<SpatialMllmModel> load)
    {
        var fresh = load();
        using var noGrad = torch.no_grad();
        var source = edited.Components().ToDictionary(c => c.Prefix, c => c.Module);
        foreach (var (prefix, module) in fresh.Components())
        {
            var weights = source[prefix].StateDictWithoutTiedCopies().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
            module.load_state_dict(weights, strict: false);
            foreach (var t in weights.Values) t.Dispose();
        }
        return fresh;
    }

    public static void Apply(SpatialMllmModel model, DecoderEdit edit)
    {
        var layer = model.model.layers[0];
        switch (edit)
        {
            case DecoderEdit.MulInPlace:
                using (torch.no_grad()) layer.self_attn.q_proj.weight!.mul_(3);
                break;
            case DecoderEdit.CopyInPlace:
                using (torch.no_grad())
                using (var generator = new Generator(7))
                using (var replacement = torch.randn(layer.self_attn.v_proj.weight!.shape, generator: generator).to(model.DType, model.Device))
                    layer.self_attn.v_proj.weight!.copy_(replacement);
                break;
            case DecoderEdit.AdamWStep:
            {
                var optimizer = torch.optim.AdamW(model.Language.parameters(), lr: 1e-2);
                using var scope = torch.NewDisposeScope();
                var ids = torch.arange(3, 19, device: model.Device).unsqueeze(0);
                var logits = model.Language.forward(model.model.EmbedTokens(ids), ids.unsqueeze(0).expand(3, 1, -1));
                logits.square().mean().backward();
                optimizer.step();
                break;
            }
            case DecoderEdit.LoadStateDict:
            {
                using var noGrad = torch.no_grad();
                var perturbed = model.Language.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value * 1.05 + 0.01);
                model.Language.load_state_dict(perturbed);
                foreach (var t in perturbed.Values) t.Dispose();
                break;
            }
            case DecoderEdit.NewParameter:
                using (torch.no_grad())
                {
                    layer.self_attn.k_proj.weight = nn.Parameter(layer.self_attn.k_proj.weight!.detach() * -2);
                    layer.mlp.down_proj.weight = nn.Parameter(layer.mlp.down_proj.weight!.detach() * 2);
                }
                break;
            case DecoderEdit.ToDtypeAndBack:
                // Every parameter replaced by a converted copy (new tensors, new addresses); the values perturbed first so
                // that the round trip has something to carry.
                using (torch.no_grad()) layer.self_attn.q_proj.bias!.add_(0.5);
                var dtype = model.DType;
                model.Language.to(dtype == ScalarType.Float64 ? ScalarType.Float32 : ScalarType.Float64);
                model.Language.to(dtype);
                break;
            case DecoderEdit.MlpInPlace:
                using (torch.no_grad()) model.model.layers[1].mlp.gate_proj.weight!.mul_(-1);
                break;
            case DecoderEdit.TiedHeadInPlace:
                // Qwen2.5-VL-3B ties the head to the embedding: editing one is editing the other (prefix tokens included).
                if (!model.Language.WordEmbeddingsTied) throw new InvalidOperationException("the tiny model ties its head");
                using (torch.no_grad()) model.lm_head.weight!.mul_(2);
                break;
        }
    }

    public static AnswerOptions Options(bool share) => new(MaxNewTokens: 4, SharePrefix: share,
        Generation: new GenerationOptions([-1], MaxNewTokens: 4, ReturnStepLogits: true));

    /// <summary>The step logits [steps × rows, vocab] of <see cref="Question"/> (two questions for Batched) on <paramref name="path"/>.</summary>
    public static float[][] Logits(SpatialMllmModel model, VideoFeatures features, DecoderPath path)
    {
        model.model.AttentionImplementation = path switch
        {
            DecoderPath.EagerAttention => AttentionImplementation.Eager,
            DecoderPath.Sdpa => AttentionImplementation.Sdpa,
            _ => AttentionImplementation.Fused,
        };
        model.Language.DecodeMode = path switch
        {
            DecoderPath.Scripted => DecodeStepMode.Scripted,
            DecoderPath.CudaGraph or DecoderPath.BatchedCudaGraph => DecodeStepMode.CudaGraph,
            _ => DecodeStepMode.Eager,
        };
        bool share = path is DecoderPath.SharedPrefix or DecoderPath.Batched or DecoderPath.CudaGraph or DecoderPath.BatchedCudaGraph;
        var options = Options(share);
        if (path is DecoderPath.Batched or DecoderPath.BatchedCudaGraph)
        {
            var prompts = BatchQuestions.Select(q => model.PromptIds(features, q)).ToList();
            using var batch = model.GenerateBatch(prompts, model.SharedPrefixLength(prompts[0]), features, options.Generation!);
            return Rows(batch);
        }
        using var result = model.Generate(model.PromptIds(features, Question), features, options);
        return Rows(result);
    }

    public static float[][] Rows(GenerationResult result) =>
        [.. result.StepLogits.SelectMany(step => Enumerable.Range(0, (int)step.shape[0]).Select(r => step[r].to(ScalarType.Float32).cpu().data<float>().ToArray()))];

    public static double MaxDifference(float[][] a, float[][] b) =>
        a.Zip(b).Max(pair => pair.First.Zip(pair.Second).Max(x => Math.Abs((double)x.First - x.Second)));
}
