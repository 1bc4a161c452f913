using System.Runtime.CompilerServices;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Runs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Lora;

/// <summary>
/// LoRA adapters on a <see cref="SpatialMllmModel"/>, as PEFT's <c>get_peft_model</c> / <c>PeftModel</c> give them:
/// one <see cref="LoraLayer"/> on every linear whose name <see cref="LoraConfig"/> targets — in the decoder
/// (<c>model.layers.N.self_attn.q_proj</c>), the vision tower (<c>visual.blocks.N.attn.qkv</c>), VGGT
/// (<c>spatial_encoder.vggt_model.…</c>) or the connector (<c>connector.mlp.0</c>) — with the base weights frozen and only
/// <c>lora_A</c> / <c>lora_B</c> trainable. <see cref="save_pretrained"/> writes PEFT's layout (<c>adapter_config.json</c>,
/// <c>adapter_model.safetensors</c> with keys <c>base_model.model.&lt;module&gt;.lora_A.weight</c>), which
/// <see cref="Load"/> and PEFT read back.
/// </summary>
public sealed class LoraModel
{
    /// <summary>PEFT's key prefix: the PeftModel's <c>base_model</c> (the LoraModel) and its <c>model</c>.</summary>
    public const string KeyPrefix = "base_model.model.";

    static readonly ConditionalWeakTable<SpatialMllmModel, LoraModel> Applied = new();

    readonly List<LoraLayer> _layers;

    LoraModel(SpatialMllmModel model, LoraConfig config, List<LoraLayer> layers) => (base_model, peft_config, _layers) = (model, config, layers);

    /// <summary>The model the adapters are on.</summary>
    public SpatialMllmModel base_model { get; }

    public LoraConfig peft_config { get; }

    /// <summary>The adapters, in the order of the model's modules.</summary>
    public IReadOnlyList<LoraLayer> Layers => _layers;

    /// <summary>The adapters on <paramref name="model"/>, or null.</summary>
    public static LoraModel? Of(SpatialMllmModel model) => Applied.TryGetValue(model, out var lora) ? lora : null;

    /// <summary>
    /// PEFT's <c>get_peft_model</c>: an adapter on every linear <paramref name="config"/> targets, initialised as PEFT does
    /// (a fresh adapter leaves every output as it was); every other parameter frozen. Throws, as PEFT does, when no module
    /// matches, and names a matched module that is not a linear layer.
    /// </summary>
    /// <param name="autocastAdapterDtype">PEFT's default: adapters over bf16/fp16 weights are kept in float32.</param>
    public static LoraModel Apply(SpatialMllmModel model, LoraConfig config, bool autocastAdapterDtype = true)
    {
        config.Validate();
        if (Of(model) is not null)
            throw new InvalidOperationException("This model carries LoRA adapters already: unload() or merge_and_unload() them before adding others.");
        var targets = new List<(string Name, Linear Layer)>();
        var unsupported = new List<string>();
        foreach (var (prefix, component) in model.Components())
            foreach (var (name, module) in component.named_modules())
            {
                string full = prefix + name;
                if (!config.Targets(full, module is Linear)) continue;
                if (module is Linear linear) targets.Add((full, linear));
                else unsupported.Add($"{full} ({module.GetType().Name})");
            }
        if (unsupported.Count > 0)
            throw new ArgumentException(
                $"target_modules {config.TargetModulesText} matches modules that are not linear layers: {string.Join(", ", unsupported.Take(5))}" +
                $"{(unsupported.Count > 5 ? $" and {unsupported.Count - 5} more" : "")}. LoRA here adapts nn.Linear layers only: name those (for " +
                "example q_proj, v_proj, visual.blocks.0.attn.qkv) or use a regular expression that matches only them.");
        if (targets.Count == 0)
            throw new ArgumentException(
                $"Target modules {config.TargetModulesText} not found in the base model. Please check the target modules and try again. " +
                $"This model's linear layers end in: {string.Join(", ", LinearSuffixes(model))}.");

        var dtype = targets[0].Layer.weight!.dtype;
        if (autocastAdapterDtype && dtype is ScalarType.BFloat16 or ScalarType.Float16) dtype = ScalarType.Float32;
        var layers = new List<LoraLayer>(targets.Count);
        try
        {
            foreach (var (name, linear) in targets)
                layers.Add(LoraLayer.Attach(name, linear, config.R, config.LoraAlpha, config.LoraDropout, config.UseRslora, dtype));
            if (!config.InitLoraWeights)
                using (torch.no_grad())
                    foreach (var layer in layers) nn.init.kaiming_uniform_(layer.lora_B.weight!, a: Math.Sqrt(5));
        }
        catch
        {
            foreach (var layer in layers) layer.Remove();
            throw;
        }
        var lora = new LoraModel(model, config with { BaseModelNameOrPath = config.BaseModelNameOrPath ?? model.Folder }, layers);
        lora.MarkOnlyLoraAsTrainable(trainable: true);
        Applied.AddOrUpdate(model, lora);
        return lora;
    }

    /// <summary>The distinct last name parts of the model's linear layers (what list-form target_modules names).</summary>
    static IEnumerable<string> LinearSuffixes(SpatialMllmModel model) =>
        model.Components().SelectMany(c => c.Module.named_modules()).Where(m => m.module is Linear)
            .Select(m => m.name[(m.name.LastIndexOf('.') + 1)..]).Distinct().Order(StringComparer.Ordinal);

    /// <summary>
    /// PEFT's <c>PeftModel.from_pretrained(model, folder)</c>: the adapter saved in <paramref name="folder"/>
    /// (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>, ours or PEFT's) on <paramref name="model"/>. A key
    /// the adapter needs and the file lacks, a key the file has for a module this model lacks, or a shape that differs is
    /// an error naming the key (the model is left without adapters).
    /// </summary>
    /// <param name="isTrainable">false (PEFT's default): the adapters are frozen too, for evaluation.</param>
    public static LoraModel Load(SpatialMllmModel model, string folder, bool isTrainable = false)
    {
        var config = LoraConfig.Load(folder);
        string path = Path.Combine(folder, LoraConfig.WeightsFileName);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{folder} has {LoraConfig.ConfigFileName} but no {LoraConfig.WeightsFileName}: the adapter's weights are missing.", path);
        LoraModel lora;
        try { lora = Apply(model, config); }
        catch (ArgumentException e) { throw new CheckpointFormatException($"{Path.Combine(folder, LoraConfig.ConfigFileName)}: {e.Message}"); }
        try
        {
            using var file = SafetensorsFile.Open(path);
            var expected = lora.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
            var unexpected = file.Entries.Keys.Where(k => !expected.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
            if (unexpected.Count > 0)
                throw new CheckpointFormatException(
                    $"{path} has {unexpected.Count} tensor(s) this model's adapter does not: {string.Join(", ", unexpected.Take(5))}" +
                    $"{(unexpected.Count > 5 ? ", …" : "")}. {WhyUnexpected(unexpected[0])}");
            foreach (var (key, tensor) in expected)
            {
                if (!file.Contains(key))
                    throw new CheckpointFormatException(
                        $"{path} has no '{key}': target_modules {config.TargetModulesText} adapts that module of this model, so the adapter was saved for another model or is incomplete.");
                file.CopyInto(key, tensor);
            }
        }
        catch
        {
            lora.unload();
            throw;
        }
        if (!isTrainable) lora.MarkOnlyLoraAsTrainable(trainable: false);
        return lora;
    }

    static string WhyUnexpected(string key) =>
        !key.StartsWith(KeyPrefix, StringComparison.Ordinal)
            ? $"PEFT's keys start with '{KeyPrefix}'."
            : key.Contains(".default.", StringComparison.Ordinal)
                ? "The keys carry the adapter name ('default'), which PEFT's save_pretrained leaves out."
                : !key.EndsWith(".lora_A.weight", StringComparison.Ordinal) && !key.EndsWith(".lora_B.weight", StringComparison.Ordinal)
                    ? "Only lora_A / lora_B weights are read (no trained biases, modules_to_save or embeddings)."
                    : "The adapter targets a module this model does not have: it was saved for another model.";

    /// <summary>The adapters' weights under PEFT's saved keys (<c>base_model.model.&lt;module&gt;.lora_A.weight</c>).</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> state_dict()
    {
        foreach (var layer in _layers)
        {
            yield return KeyValuePair.Create($"{KeyPrefix}{layer.Name}.lora_A.weight", (Tensor)layer.lora_A.weight!);
            yield return KeyValuePair.Create($"{KeyPrefix}{layer.Name}.lora_B.weight", (Tensor)layer.lora_B.weight!);
        }
    }

    /// <summary>The adapters' parameters under the model's own names (<c>model.layers.0.self_attn.q_proj.lora_A.weight</c>:
    /// the names <c>named_parameters()</c> gives them in the model).</summary>
    public IEnumerable<(string Name, Parameter Parameter)> named_parameters()
    {
        foreach (var layer in _layers)
        {
            yield return ($"{layer.Name}.lora_A.weight", layer.lora_A.weight!);
            yield return ($"{layer.Name}.lora_B.weight", layer.lora_B.weight!);
        }
    }

    /// <summary>PEFT's <c>mark_only_lora_as_trainable</c>: requires_grad on the adapters only (or on nothing).</summary>
    void MarkOnlyLoraAsTrainable(bool trainable)
    {
        foreach (var (_, component) in base_model.Components())
            foreach (var parameter in component.parameters()) parameter.requires_grad = false;
        foreach (var (_, parameter) in named_parameters()) parameter.requires_grad = trainable;
    }

    /// <summary>PEFT's <c>get_nb_trainable_parameters</c>: the adapters' parameter count and the model's (adapters included).</summary>
    public (long Trainable, long All) get_nb_trainable_parameters()
    {
        long trainable = named_parameters().Where(p => p.Parameter.requires_grad).Sum(p => p.Parameter.NumberOfElements);
        long all = base_model.Components().SelectMany(c => c.Module.parameters()).Sum(p => p.NumberOfElements);
        return (trainable, all);
    }

    /// <summary>Dropout on (training) or off (evaluation) in every adapter; the rest of the model keeps its mode.</summary>
    public void train(bool on = true)
    {
        foreach (var layer in _layers) layer.lora_dropout.train(on);
    }

    /// <summary>PEFT's <c>merge_adapter</c>: every update added into its base weight (forwards then add nothing).</summary>
    public void merge_adapter()
    {
        foreach (var layer in _layers) layer.merge();
    }

    /// <summary>PEFT's <c>unmerge_adapter</c>: every merged update subtracted again.</summary>
    public void unmerge_adapter()
    {
        foreach (var layer in _layers) layer.unmerge();
    }

    /// <summary>PEFT's <c>merge_and_unload</c>: the updates merged into the base weights and the adapters removed, leaving
    /// a plain model (save it with the checkpoint writer, as a full model).</summary>
    public SpatialMllmModel merge_and_unload()
    {
        merge_adapter();
        return Unload();
    }

    /// <summary>PEFT's <c>unload</c>: the adapters removed without merging (the base model as it was).</summary>
    public SpatialMllmModel unload()
    {
        unmerge_adapter();
        return Unload();
    }

    SpatialMllmModel Unload()
    {
        foreach (var layer in _layers) layer.Remove();
        _layers.Clear();
        Applied.Remove(base_model);
        return base_model;
    }

    /// <summary>PEFT's <c>enable_adapter_layers</c>.</summary>
    public void enable_adapter_layers()
    {
        foreach (var layer in _layers) layer.SetEnabled(true);
    }

    /// <summary>PEFT's <c>disable_adapter_layers</c>: the model computes as the base model (merged adapters are unmerged).</summary>
    public void disable_adapter_layers()
    {
        foreach (var layer in _layers) layer.SetEnabled(false);
    }

    /// <summary>
    /// PEFT's <c>with model.disable_adapter():</c> — the base model until disposed, e.g. as the reference policy of a KL
    /// penalty: <c>using (lora.disable_adapter()) { … }</c>. Caches computed with the adapters on (a video's shared prompt
    /// prefix, <c>VideoFeatures</c>) are not used meanwhile, as after any weight change.
    /// </summary>
    public IDisposable disable_adapter()
    {
        var enabled = _layers.Where(l => l.Enabled).ToList();
        foreach (var layer in enabled) layer.SetEnabled(false);
        return new Reenable(enabled);
    }

    sealed class Reenable(List<LoraLayer> layers) : IDisposable
    {
        public void Dispose()
        {
            foreach (var layer in layers) layer.SetEnabled(true);
            layers.Clear();
        }
    }

    /// <summary>
    /// PEFT's <c>save_pretrained</c>: <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> (metadata
    /// <c>{"format": "pt"}</c>, the adapters' dtype) into <paramref name="folder"/>, each file written whole or not at all.
    /// </summary>
    public void save_pretrained(string folder)
    {
        Directory.CreateDirectory(folder);
        var tensors = state_dict().Select(kv => KeyValuePair.Create(kv.Key, kv.Value.contiguous())).ToList();
        try
        {
            AtomicFile.Write(Path.Combine(folder, LoraConfig.WeightsFileName),
                path => SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" }));
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
        peft_config.Save(folder);
    }

    /// <summary>Whether a file name is one <see cref="save_pretrained"/> writes.</summary>
    public static bool IsAdapterFile(string name) => name is LoraConfig.ConfigFileName or LoraConfig.WeightsFileName;
}
