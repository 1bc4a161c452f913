using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.TestSupport;

/// <summary>Edits of LoRA adapters and their oracle, for the weight contract's LoRA cases (CPU and CUDA).</summary>
public static class LoraEdits
{
    /// <summary>Adapters on the decoder's attention (fused q/k/v and o_proj).</summary>
    public static LoraConfig AttentionAdapters { get; } = new() { R = 4, LoraAlpha = 8, TargetModules = ["q_proj", "v_proj", "o_proj"] };

    /// <summary>Every adapter's lora_B set in place (under no_grad, as an edit or an optimizer step does) to seeded noise.</summary>
    public static void EditLoraB(LoraModel lora, int seed = 3)
    {
        using var noGrad = torch.no_grad();
        using var generator = new Generator((ulong)seed);
        foreach (var layer in lora.Layers)
        {
            var b = layer.lora_B.weight!;
            using var noise = torch.randn(b.shape, generator: generator).mul_(0.5);
            b.copy_(noise);
        }
    }

    /// <summary>A freshly loaded model (<paramref name="load"/>) whose weights are <paramref name="lora"/>'s base weights
    /// plus each adapter's update.</summary>
    public static SpatialMllmModel MergedCopy(LoraModel lora, Func<SpatialMllmModel> load)
    {
        var fresh = load();
        var linears = fresh.Components().SelectMany(c => c.Module.named_modules().Select(m => (Name: c.Prefix + m.name, m.module)))
            .Where(m => m.module is Linear).ToDictionary(m => m.Name, m => (Linear)m.module);
        using var noGrad = torch.no_grad();
        foreach (var layer in lora.Layers)
        {
            using var delta = layer.get_delta_weight();
            linears[layer.Name].weight!.copy_(layer.base_layer.weight!).add_(delta);
        }
        return fresh;
    }
}
