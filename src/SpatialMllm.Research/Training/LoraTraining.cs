using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models.Vggt;

namespace SpatialMllm.Research.Training;

/// <summary>What the SFT loop trains when it trains LoRA adapters (<see cref="TrainingArguments.LoraR"/> &gt; 0).</summary>
public static class LoraTraining
{
    /// <summary>
    /// The adapters' lora_A / lora_B, by their names in the model, at learning_rate (<see cref="ParameterGroup.Language"/>)
    /// and decayed as transformers decays every weight that is not a bias. Refuses adapters that no gradient reaches: the
    /// SFT loss runs VGGT's aggregator (with autograd once an adapter there trains) but none of its heads.
    /// </summary>
    public static IReadOnlyList<TrainableParameter> TrainableParameters(LoraModel lora)
    {
        var unreached = lora.Layers.Where(l => l.Name.StartsWith(VggtModel.CheckpointPrefix, StringComparison.Ordinal)
                && !l.Name.StartsWith(VggtModel.CheckpointPrefix + "aggregator.", StringComparison.Ordinal)).Select(l => l.Name).ToList();
        if (unreached.Count > 0)
            throw new ArgumentException(
                $"lora_target_modules adapts VGGT's {string.Join(", ", unreached.Take(3))}{(unreached.Count > 3 ? $" and {unreached.Count - 3} more" : "")}, " +
                "but the SFT loss never runs VGGT's heads, so those adapters would never learn. " +
                "Target the decoder, vision tower, connector or VGGT's aggregator.");
        return [.. lora.named_parameters()
            .Select(p => new TrainableParameter(p.Name, p.Parameter, ParameterGroup.Language, TrainableSet.DecaysWeight(p.Name)))
            .OrderBy(p => p.Key, StringComparer.Ordinal)];
    }
}
