using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.TestSupport;
using TorchSharp;
using static TorchSharp.torch;
using static SpatialMllm.Research.TestSupport.LoraEdits;
using static SpatialMllm.Research.TestSupport.WeightEdits;

namespace SpatialMllm.Research.GpuTests;

/// <summary>
/// The weight-edit contract (issue 22) on CUDA: every idiom × the CUDA paths — the fused attention, the TorchScript step,
/// the shared prefix, and the CUDA graph captured before the edit, alone and batched — gives the step logits of a freshly
/// loaded model carrying the same weights (the tiny model in float32, within 1e-5); and at full size in bf16, an edit made
/// after the decode graph was captured gives a freshly loaded edited model's tokens. LoRA adapters added after the graph
/// was captured, and their lora_B edited in place, give the merged model's logits on the same paths.
/// </summary>
public sealed class WeightEditGpuTests
{
    static readonly Lazy<string> TinyFolder = new(() =>
    {
        string folder = Path.Combine(Path.GetTempPath(), $"spatial-mllm-gpu-weight-edits-{Environment.ProcessId}");
        Directory.CreateDirectory(folder);
        TinyCheckpoint.Create(folder);
        return folder;
    });

    /// <summary>Four 84×112 frames of noise, as the tiny fixture's video is shaped.</summary>
    static Tensor Frames()
    {
        using var generator = new Generator(11);
        return torch.randint(0, 256, [4, 3, 84, 112], ScalarType.Byte, generator: generator);
    }

    static SpatialMllmModel LoadTiny() => SpatialMllmModel.Load(TinyFolder.Value, torch.CUDA, ScalarType.Float32);

    public static TheoryData<DecoderEdit, DecoderPath> Matrix()
    {
        var data = new TheoryData<DecoderEdit, DecoderPath>();
        foreach (var edit in Enum.GetValues<DecoderEdit>())
            foreach (var path in new[] { DecoderPath.Fused, DecoderPath.Scripted, DecoderPath.SharedPrefix, DecoderPath.CudaGraph, DecoderPath.BatchedCudaGraph })
                data.Add(edit, path);
        return data;
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void An_edit_is_what_the_next_forward_computes_on_cuda(DecoderEdit edit, DecoderPath path)
    {
        Gpu.RequireCuda();
        using var frames = Frames();
        using var model = LoadTiny();
        using var features = model.EncodeFrames(frames);
        var before = Logits(model, features, path); // captures the graph, caches the prefix, fuses q/k/v
        Apply(model, edit);
        var after = Logits(model, features, path);

        using var fresh = FreshCopyOf(model, LoadTiny);
        using var freshFeatures = fresh.EncodeFrames(frames);
        var expected = Logits(fresh, freshFeatures, path);
        Assert.Equal(expected.Length, after.Length);
        double difference = MaxDifference(expected, after);
        Assert.True(difference <= 1e-5, $"{edit} on {path}: logits differ from a freshly loaded model's by {difference:E2}");
        Assert.True(MaxDifference(before, after) > 1e-4, $"{edit} did not move the logits on {path}");
    }

    public static TheoryData<DecoderPath> CudaPaths() =>
        [DecoderPath.Fused, DecoderPath.Scripted, DecoderPath.SharedPrefix, DecoderPath.CudaGraph, DecoderPath.BatchedCudaGraph];

    [Theory]
    [MemberData(nameof(CudaPaths))]
    public void A_lora_adapter_added_after_capture_and_edited_in_place_is_what_the_next_forward_computes_on_cuda(DecoderPath path)
    {
        Gpu.RequireCuda();
        using var frames = Frames();
        using var model = LoadTiny();
        using var features = model.EncodeFrames(frames);
        var before = Logits(model, features, path); // captures the graph, caches the prefix, fuses q/k/v
        var lora = LoraModel.Apply(model, AttentionAdapters);
        EditLoraB(lora);
        var after = Logits(model, features, path);

        using var merged = MergedCopy(lora, LoadTiny);
        using var mergedFeatures = merged.EncodeFrames(frames);
        var expected = Logits(merged, mergedFeatures, path);
        double difference = MaxDifference(expected, after);
        Assert.True(difference <= 1e-5, $"LoRA on {path}: logits differ from the merged model's by {difference:E2}");
        Assert.True(MaxDifference(before, after) > 1e-4, $"the adapter did not move the logits on {path}");

        lora.unload(); // the base weights again, on the same path (the graph replays them)
        var unloaded = Logits(model, features, path);
        Assert.True(MaxDifference(before, unloaded) <= 1e-5, $"after unload on {path}: {MaxDifference(before, unloaded):E2} from the base model");
    }

    [Fact]
    public void Full_size_bf16_edits_after_the_graph_was_captured_give_a_fresh_models_tokens()
    {
        string fixture = Gpu.RequireFullSizeFixtures()[0];
        const int Steps = 24;
        using var scope = torch.NewDisposeScope();
        using var model = SpatialMllmModel.Load(fixture, torch.CUDA, ScalarType.BFloat16);
        using var io = SafetensorsFile.Open(Path.Combine(fixture, "io.safetensors"));
        var ids = io.Read("input_ids", device: model.Device);
        var positions = io.Read("position_ids", device: model.Device);
        var deltas = io.Read("rope_deltas", device: model.Device);
        var fusedEmbeds = io.Read("fused_embeds", model.DType, model.Device);
        var greedy = new GenerationOptions([-1], MaxNewTokens: Steps, ReturnStepLogits: true);

        long[] Tokens(SpatialMllmModel m)
        {
            m.Language.DecodeMode = DecodeStepMode.CudaGraph;
            var embeds = m.Language.EmbedWithVisualTokens(ids, fusedEmbeds, m.Config.Tokens.VideoTokenId);
            using var result = Generation.Generate(m.Language, ids, embeds, positions, deltas, greedy);
            return result.Sequences.cpu().data<long>().ToArray();
        }

        void Edit(SpatialMllmModel m)
        {
            using var noGrad = torch.no_grad();
            m.model.layers[0].self_attn.v_proj.weight.mul_(-1);
            m.model.layers[20].mlp.up_proj.weight.mul_(1.5);
            m.model.layers[35].self_attn.q_proj.weight = nn.Parameter(m.model.layers[35].self_attn.q_proj.weight.detach() * 0.5);
        }

        var before = Tokens(model);   // the graph is captured here and kept for the next generation
        Edit(model);
        var after = Tokens(model);
        using var fresh = SpatialMllmModel.Load(fixture, torch.CUDA, ScalarType.BFloat16);
        Edit(fresh);
        var expected = Tokens(fresh);
        Gpu.Report("Weight edits after the decode graph was captured (full size, bf16, 24 steps)",
        [
            "| compared | equal tokens |", "|---|---:|",
            $"| edited model vs a fresh model with the same edit | {after.Zip(expected).Count(p => p.First == p.Second)}/{Steps} |",
            $"| edited vs before the edit | {after.Zip(before).Count(p => p.First == p.Second)}/{Steps} |",
        ]);
        Assert.Equal(expected, after);
        Assert.NotEqual(before, after);
    }
}
