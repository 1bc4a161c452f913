using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>The model a training run (SFT or GRPO) updates, and what of it trains: the parameters <c>set_model</c>
/// leaves trainable, or only the LoRA adapters.</summary>
/// <param name="Lora">The adapters, when the run trains LoRA (<see cref="TrainingArguments.Lora"/>).</param>
public sealed record TrainedModel(SpatialMllmModel Model, LoraModel? Lora, IReadOnlyList<TrainableParameter> Trainable) : IDisposable
{
    /// <summary>Whether a trainable parameter lies outside the decoder, so the encoders' output needs a graph.</summary>
    public bool EncodersTrain => Trainable.Any(p => !p.Key.StartsWith("model.", StringComparison.Ordinal) && !p.Key.StartsWith("lm_head.", StringComparison.Ordinal));

    /// <summary>
    /// Loads the run's model: from <paramref name="resume"/> for full fine-tuning; with LoRA the base model from
    /// model_name_or_path and the adapter from <paramref name="resume"/>, or a new one (seeded first, as transformers'
    /// Trainer seeds before it builds the model: a new adapter's lora_A draws from the generator). Gradient checkpointing
    /// is set on the decoder and VGGT's aggregator.
    /// </summary>
    public static TrainedModel Load(TrainingArguments a, string? resume, Device device, ScalarType dtype, Action<string> log)
    {
        var model = SpatialMllmModel.Load(a.Lora is null ? resume ?? a.ModelNameOrPath : a.ModelNameOrPath, device, dtype);
        model.model.GradientCheckpointing = a.GradientCheckpointing;
        if (model.spatial_encoder is { } spatial) spatial.vggt_model.aggregator.GradientCheckpointing = a.GradientCheckpointing;
        if (a.Lora is not { } config) return new TrainedModel(model, null, a.TrainableSet.Apply(model));
        torch.manual_seed(a.Seed);
        var lora = resume is null ? LoraModel.Apply(model, config) : LoraModel.Load(model, resume, isTrainable: true);
        lora.train();
        if (a.TuneMmVision || !a.TuneMmLlm || !a.TuneMmConnector || a.TuneMmSpatialEncoder)
            log("note: with LoRA only the adapters train; the tune_mm_* switches do not apply.");
        return new TrainedModel(model, lora, LoraTraining.TrainableParameters(lora));
    }

    /// <summary>The trained weights into <paramref name="folder"/>: the model in the released layout, or with LoRA the
    /// adapter in PEFT's.</summary>
    public void Save(string folder)
    {
        if (Lora is null) CheckpointWriter.Save(Model, folder);
        else Lora.save_pretrained(folder);
    }

    /// <summary>The run's output: <see cref="Save"/> into output_dir and, with LoRA and <paramref name="mergeLora"/>, the base
    /// model with the adapter merged in, into output_dir/<see cref="SftTrainer.MergedFolder"/>.</summary>
    public void SaveFinal(string outputDir, bool mergeLora, Action<string> log)
    {
        Save(outputDir);
        log($"saved the trained {(Lora is null ? "model" : "LoRA adapter")} to {outputDir}");
        if (Lora is null || !mergeLora) return;
        string merged = Path.Combine(outputDir, SftTrainer.MergedFolder);
        CheckpointWriter.Save(Lora.merge_and_unload(), merged);
        log($"saved the base model with the adapter merged into it to {merged}");
    }

    public void Dispose() => Model.Dispose();
}

/// <summary>What a run trains when it trains LoRA adapters (<see cref="TrainingArguments.LoraR"/> &gt; 0).</summary>
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
