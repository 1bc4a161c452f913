using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SpatialMllm.Research.Checkpoints;

namespace SpatialMllm.Research.Lora;

/// <summary>
/// PEFT's <c>LoraConfig</c>, the part this library runs: rank, alpha, dropout, rsLoRA, which linears to adapt, and the
/// fields <c>adapter_config.json</c> carries (<see cref="Save"/> writes them as PEFT's <c>save_pretrained</c> does,
/// sorted, with PEFT's defaults for the options not used here, so PEFT loads our adapters and we load PEFT's plain LoRA ones).
/// </summary>
public sealed record LoraConfig
{
    /// <summary>PEFT's file names (<c>peft.utils.constants</c>: CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME).</summary>
    public const string ConfigFileName = "adapter_config.json", WeightsFileName = "adapter_model.safetensors";

    /// <summary>PEFT's <c>INCLUDE_LINEAR_LAYERS_SHORTHAND</c>: every linear layer of the model.</summary>
    public const string AllLinear = "all-linear";

    /// <summary>The rank (PEFT's <c>r</c>, default 8).</summary>
    public int R { get; init; } = 8;

    /// <summary>PEFT's <c>lora_alpha</c> (default 8): the update is scaled by lora_alpha / r (rsLoRA: / √r).</summary>
    public double LoraAlpha { get; init; } = 8;

    public double LoraDropout { get; init; }

    /// <summary>PEFT's list form of <c>target_modules</c>: a module is adapted when its full name (e.g.
    /// <c>model.layers.0.self_attn.q_proj</c>) is one of these or ends with "." and one of them.</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }

    /// <summary>PEFT's string form of <c>target_modules</c>: a regular expression the whole module name must match, or
    /// <see cref="AllLinear"/>. Set this or <see cref="TargetModules"/>.</summary>
    public string? TargetModulesPattern { get; init; }

    /// <summary>PEFT's <c>exclude_modules</c> (list form): names or name suffixes never adapted.</summary>
    public IReadOnlyList<string>? ExcludeModules { get; init; }

    /// <summary>Rank-stabilised LoRA: scaling lora_alpha / √r instead of lora_alpha / r.</summary>
    public bool UseRslora { get; init; }

    /// <summary>true: PEFT's init (A kaiming-uniform with a = √5, B zeros: a fresh adapter changes nothing); false: both as
    /// nn.Linear initialises them (PEFT's debugging option, an adapter that changes the output at once).</summary>
    public bool InitLoraWeights { get; init; } = true;

    public string TaskType { get; init; } = "CAUSAL_LM";

    /// <summary>The base model's folder or hub id, recorded in adapter_config.json.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>What the update is multiplied by: lora_alpha / r, or lora_alpha / √r with rsLoRA.</summary>
    public double Scaling => UseRslora ? LoraAlpha / Math.Sqrt(R) : LoraAlpha / R;

    /// <summary>Throws <see cref="ArgumentException"/> listing every field that cannot work.</summary>
    public void Validate()
    {
        var problems = new List<string>();
        if (R <= 0) problems.Add($"r should be a positive integer value but the value passed is {R}.");
        if (!double.IsFinite(LoraAlpha) || LoraAlpha <= 0) problems.Add($"lora_alpha must be a positive number; got {F(LoraAlpha)}.");
        if (!(LoraDropout >= 0 && LoraDropout < 1)) problems.Add($"lora_dropout must be in [0, 1); got {F(LoraDropout)}.");
        if ((TargetModules is null) == (TargetModulesPattern is null))
            problems.Add("target_modules must be given, either as a list of module names or name suffixes (q_proj, v_proj, …) or as one regular expression.");
        if (TargetModules is { Count: 0 }) problems.Add("target_modules is an empty list: name at least one module (q_proj, v_proj, …).");
        if (TargetModules?.FirstOrDefault(string.IsNullOrWhiteSpace) is not null) problems.Add("target_modules holds an empty name.");
        if (TargetModulesPattern is { } pattern && !pattern.Equals(AllLinear, StringComparison.OrdinalIgnoreCase))
        {
            try { _ = new Regex(pattern); }
            catch (ArgumentException e) { problems.Add($"target_modules '{pattern}' is not a valid regular expression: {e.Message}"); }
        }
        if (problems.Count > 0) throw new ArgumentException(string.Join(Environment.NewLine, problems));
    }

    static string F(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>PEFT's <c>check_target_module_exists</c>: whether the module named <paramref name="name"/> is adapted.</summary>
    public bool Targets(string name, bool isLinear)
    {
        if (ExcludeModules is { } excluded && excluded.Any(e => name == e || name.EndsWith("." + e, StringComparison.Ordinal))) return false;
        if (TargetModulesPattern is { } pattern)
            return pattern.Equals(AllLinear, StringComparison.OrdinalIgnoreCase)
                ? isLinear
                : Regex.IsMatch(name, $"^(?:{pattern})$", RegexOptions.CultureInvariant);
        return TargetModules!.Any(t => name == t || name.EndsWith("." + t, StringComparison.Ordinal));
    }

    /// <summary>target_modules as the message and the file show it.</summary>
    public string TargetModulesText => TargetModulesPattern ?? "[" + string.Join(", ", TargetModules ?? []) + "]";

    /// <summary>
    /// <c>adapter_config.json</c> as PEFT's <c>LoraConfig.save_pretrained</c> writes it (<c>json.dumps(to_dict(),
    /// indent=2, sort_keys=True)</c>, <c>inference_mode</c> true as <c>PeftModel.save_pretrained</c> sets it): the fields
    /// this library uses, and PEFT's defaults for the LoRA variants and options it does not run.
    /// </summary>
    public JsonObject ToJson()
    {
        var fields = new SortedDictionary<string, JsonNode?>(StringComparer.Ordinal)
        {
            ["alpha_pattern"] = new JsonObject(),
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = BaseModelNameOrPath,
            ["bias"] = "none",
            ["exclude_modules"] = ExcludeModules is null ? null : new JsonArray([.. ExcludeModules.Select(m => JsonValue.Create(m))]),
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = InitLoraWeights,
            ["layer_replication"] = null,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["loftq_config"] = new JsonObject(),
            ["lora_alpha"] = Number(LoraAlpha),
            ["lora_bias"] = false,
            ["lora_dropout"] = LoraDropout,
            ["megatron_config"] = null,
            ["megatron_core"] = "megatron.core",
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = R,
            ["rank_pattern"] = new JsonObject(),
            ["revision"] = null,
            ["target_modules"] = TargetModulesPattern is { } pattern ? JsonValue.Create(pattern) : new JsonArray([.. TargetModules!.Select(m => JsonValue.Create(m))]),
            ["task_type"] = TaskType,
            ["trainable_token_indices"] = null,
            ["use_dora"] = false,
            ["use_rslora"] = UseRslora,
        };
        var json = new JsonObject();
        foreach (var (key, value) in fields) json[key] = value;
        return json;
    }

    /// <summary>A whole alpha as Python's json writes an int (16, not 16.0).</summary>
    static JsonNode Number(double x) => x == Math.Floor(x) && Math.Abs(x) < 1e15 ? JsonValue.Create((long)x) : JsonValue.Create(x);

    /// <summary>Writes <c>adapter_config.json</c> into <paramref name="folder"/> (under a temporary name, then renamed).</summary>
    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        Runs.AtomicFile.WriteAllText(Path.Combine(folder, ConfigFileName), ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Fields whose non-default values select LoRA variants or options this library does not run: an adapter
    /// that uses one is refused by name rather than run as something else.</summary>
    static readonly (string Field, Func<JsonNode?, bool> IsDefault, string Why)[] Unsupported =
    [
        ("use_dora", n => n is null || n.GetValueKind() == JsonValueKind.False, "DoRA adapters"),
        ("bias", n => n is null || n.GetValueKind() == JsonValueKind.String && n.GetValue<string>() == "none", "trained biases (only bias \"none\")"),
        ("lora_bias", n => n is null || n.GetValueKind() == JsonValueKind.False, "lora_bias"),
        ("fan_in_fan_out", n => n is null || n.GetValueKind() == JsonValueKind.False, "fan_in_fan_out (Conv1D layers)"),
        ("rank_pattern", EmptyOrNull, "per-module ranks (rank_pattern)"),
        ("alpha_pattern", EmptyOrNull, "per-module alphas (alpha_pattern)"),
        ("layers_to_transform", EmptyOrNull, "layers_to_transform"),
        ("modules_to_save", EmptyOrNull, "modules_to_save (fully trained modules beside the adapters)"),
        ("target_parameters", EmptyOrNull, "target_parameters"),
        ("trainable_token_indices", EmptyOrNull, "trainable_token_indices"),
        ("layer_replication", EmptyOrNull, "layer_replication"),
        ("use_qalora", n => n is null || n.GetValueKind() == JsonValueKind.False, "QA-LoRA"),
    ];

    static bool EmptyOrNull(JsonNode? node) => node switch
    {
        null => true,
        JsonArray a => a.Count == 0,
        JsonObject o => o.Count == 0,
        _ => false,
    };

    /// <summary>
    /// Reads <c>adapter_config.json</c> from an adapter folder (ours or PEFT's). Throws, naming the file and field, for
    /// another PEFT method, a missing or mistyped field, or a LoRA option this library does not run.
    /// </summary>
    public static LoraConfig Load(string folder)
    {
        string path = Path.Combine(folder, ConfigFileName);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{folder} is not a LoRA adapter folder: it has no {ConfigFileName} (an adapter saved by LoraModel.save_pretrained or PEFT has one beside {WeightsFileName}).", path);
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CheckpointFormatException($"{path}: not a JSON object."); }
        catch (JsonException e) { throw new CheckpointFormatException($"{path}: not valid JSON: {e.Message}"); }

        T Field<T>(string name, T fallback)
        {
            if (!json.TryGetPropertyValue(name, out var node) || node is null) return fallback;
            try { return node.GetValue<T>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            { throw new CheckpointFormatException($"{path}: {name} is {node.ToJsonString()}, not a {typeof(T).Name}."); }
        }

        string peftType = Field("peft_type", "");
        if (peftType != "LORA")
            throw new CheckpointFormatException($"{path}: peft_type is \"{peftType}\"; only LoRA adapters (\"LORA\") are supported.");
        var used = Unsupported.Where(u => !u.IsDefault(json[u.Field])).Select(u => $"{u.Field} = {json[u.Field]!.ToJsonString()} ({u.Why})").ToList();
        if (json["init_lora_weights"] is { } init && init.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
            used.Add($"init_lora_weights = {init.ToJsonString()} (only true or false)");
        if (used.Count > 0)
            throw new CheckpointFormatException($"{path} uses LoRA options this library does not run: {string.Join("; ", used)}.");

        var targets = json["target_modules"];
        var config = new LoraConfig
        {
            R = Field("r", 8),
            LoraAlpha = Field("lora_alpha", 8.0),
            LoraDropout = Field("lora_dropout", 0.0),
            TargetModules = targets is JsonArray list ? [.. list.Select(t => t?.GetValue<string>() ?? "")] : null,
            TargetModulesPattern = targets is JsonValue value ? value.GetValue<string>() : null,
            ExcludeModules = json["exclude_modules"] switch
            {
                null => null,
                JsonArray excluded => [.. excluded.Select(t => t?.GetValue<string>() ?? "")],
                var other => throw new CheckpointFormatException($"{path}: exclude_modules {other.ToJsonString()} as a regular expression is not supported (give a list)."),
            },
            UseRslora = Field("use_rslora", false),
            InitLoraWeights = json["init_lora_weights"]?.GetValueKind() != JsonValueKind.False,
            TaskType = Field<string?>("task_type", null) ?? "CAUSAL_LM",
            BaseModelNameOrPath = Field<string?>("base_model_name_or_path", null),
        };
        try { config.Validate(); }
        catch (ArgumentException e) { throw new CheckpointFormatException($"{path}: {e.Message}"); }
        return config;
    }
}
