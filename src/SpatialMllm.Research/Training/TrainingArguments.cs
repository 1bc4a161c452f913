using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SpatialMllm.Research.Lora;

namespace SpatialMllm.Research.Training;

/// <summary>
/// A fine-tuning run, named after the seed's arguments (<c>spatial_mllm_train_demo.sh</c>; JSON keys and
/// <c>--flags</c> in snake_case). Defaults are that script's recipe: lr 7e-6 for the decoder, 2e-5 for merger and
/// connector, weight decay 0.1, cosine with 3 % warm-up, clip 1.0, accumulation 8, batch 1, 16 frames at 4 fps.
/// </summary>
public sealed record TrainingArguments
{
    [JsonPropertyName("model_name_or_path")] public string ModelNameOrPath { get; init; } = "";
    /// <summary>Annotation files, comma-separated, each with an optional <c>%N</c> sampling percentage.</summary>
    [JsonPropertyName("dataset_use")] public string DatasetUse { get; init; } = "";
    /// <summary>The folder video paths are relative to; null: each annotation file's folder.</summary>
    [JsonPropertyName("data_path")] public string? DataPath { get; init; }
    [JsonPropertyName("output_dir")] public string OutputDir { get; init; } = "";
    [JsonPropertyName("learning_rate")] public double LearningRate { get; init; } = 7e-6;
    /// <summary>The merger and connector's learning rate; null: <see cref="LearningRate"/>.</summary>
    [JsonPropertyName("mm_projector_lr")] public double? MmProjectorLr { get; init; } = 2e-5;
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; init; } = 0.1;
    [JsonPropertyName("adam_beta1")] public double AdamBeta1 { get; init; } = 0.9;
    [JsonPropertyName("adam_beta2")] public double AdamBeta2 { get; init; } = 0.999;
    [JsonPropertyName("adam_epsilon")] public double AdamEpsilon { get; init; } = 1e-8;
    [JsonPropertyName("num_train_epochs")] public double NumTrainEpochs { get; init; } = 1;
    /// <summary>Positive: the number of optimizer steps (overrides the epochs).</summary>
    [JsonPropertyName("max_steps")] public int MaxSteps { get; init; } = -1;
    /// <summary>Examples in one forward (the seed's 1): their loss is the mean of the examples' losses, so batch B with
    /// accumulation A trains as accumulation A·B would (transformers' token mean over a padded batch would weigh long
    /// answers more), in a few kernels where A·B forwards need many; on a GPU much faster for small models.</summary>
    [JsonPropertyName("per_device_train_batch_size")] public int PerDeviceTrainBatchSize { get; init; } = 1;
    [JsonPropertyName("gradient_accumulation_steps")] public int GradientAccumulationSteps { get; init; } = 8;
    /// <summary>Clip the global gradient norm to this; 0: no clipping (transformers' meaning).</summary>
    [JsonPropertyName("max_grad_norm")] public double MaxGradNorm { get; init; } = 1.0;
    [JsonPropertyName("warmup_ratio")] public double WarmupRatio { get; init; } = 0.03;
    [JsonPropertyName("lr_scheduler_type")] public string LrSchedulerType { get; init; } = "cosine";
    /// <summary>Below 1: a fraction of the total steps (the seed saves every 0.0625); else a whole step count; 0: only at the end.</summary>
    [JsonPropertyName("save_steps")] public double SaveSteps { get; init; } = 0.0625;
    /// <summary>Keep at most this many checkpoint-N folders (oldest deleted); null or ≤ 0: all (transformers' meaning).</summary>
    [JsonPropertyName("save_total_limit")] public int? SaveTotalLimit { get; init; }
    [JsonPropertyName("logging_steps")] public int LoggingSteps { get; init; } = 1;
    [JsonPropertyName("seed")] public int Seed { get; init; } = 42;
    [JsonPropertyName("tune_mm_llm")] public bool TuneMmLlm { get; init; } = true;
    [JsonPropertyName("tune_mm_connector")] public bool TuneMmConnector { get; init; } = true;
    [JsonPropertyName("tune_mm_vision")] public bool TuneMmVision { get; init; }
    [JsonPropertyName("tune_mm_spatial_encoder")] public bool TuneMmSpatialEncoder { get; init; }
    /// <summary>Finer than tune_mm_spatial_encoder: only VGGT's last N aggregator block pairs (frame + global) train; 0: none.</summary>
    [JsonPropertyName("tune_mm_spatial_encoder_last_blocks")] public int TuneMmSpatialEncoderLastBlocks { get; init; }
    /// <summary>Finer than tune_mm_spatial_encoder: VGGT's camera, depth and point heads train.</summary>
    [JsonPropertyName("tune_mm_spatial_encoder_heads")] public bool TuneMmSpatialEncoderHeads { get; init; }
    [JsonPropertyName("gradient_checkpointing")] public bool GradientCheckpointing { get; init; }
    /// <summary>bf16 weights (the seed's <c>--bf16</c>); null: bf16 on CUDA, float32 on the CPU.</summary>
    [JsonPropertyName("bf16")] public bool? Bf16 { get; init; }
    [JsonPropertyName("video_max_frames")] public int VideoMaxFrames { get; init; } = 16;
    [JsonPropertyName("video_min_frames")] public int VideoMinFrames { get; init; } = 16;
    [JsonPropertyName("base_interval")] public double BaseInterval { get; init; } = 2;
    [JsonPropertyName("video_frame_fps")] public double? VideoFrameFps { get; init; } = 4;
    [JsonPropertyName("video_min_frame_pixels")] public int VideoMinFramePixels { get; init; } = 293216;
    [JsonPropertyName("video_max_frame_pixels")] public int VideoMaxFramePixels { get; init; } = 324576;
    [JsonPropertyName("model_max_length")] public int ModelMaxLength { get; init; } = 8192;
    /// <summary>Videos kept in memory decoded and processed (float patches: about 8 × their uint8 frames) for later rows
    /// of the same video (ours, not the seed's; 0: every row decodes its video), decoded ahead in parallel when the data's
    /// videos all fit. For data with many questions per short video, such as synthetic scenes.</summary>
    [JsonPropertyName("decoded_video_cache")] public int DecodedVideoCache { get; init; }
    /// <summary>"auto" (default): resume from the newest complete checkpoint-N in output_dir, if any, when the run there
    /// has the same model, data and settings (its <c>run.json</c>); a checkpoint folder: continue from that one whatever
    /// differs (transformers' meaning; the differences are reported); "none": start over (refused where output_dir holds
    /// an earlier run, unless it is moved aside with <c>--force-new</c>).</summary>
    [JsonPropertyName("resume_from_checkpoint")] public string ResumeFromCheckpoint { get; init; } = "auto";
    /// <summary>cpu, cuda or cuda:N; null: cuda when available.</summary>
    [JsonPropertyName("device")] public string? Device { get; init; }
    /// <summary>LoRA's rank; 0 (default): no LoRA, the trainable set is fine-tuned whole. Positive: only LoRA adapters on
    /// <see cref="LoraTargetModules"/> train (at learning_rate), and checkpoints and the output are the adapter in PEFT's layout.</summary>
    [JsonPropertyName("lora_r")] public int LoraR { get; init; }
    [JsonPropertyName("lora_alpha")] public double LoraAlpha { get; init; } = 16;
    [JsonPropertyName("lora_dropout")] public double LoraDropout { get; init; } = 0.05;
    /// <summary>PEFT's target_modules: comma-separated module names or name suffixes (<c>q_proj,v_proj</c>: every module
    /// whose name ends so, the vision tower's included), or one regular expression the whole name must match, or
    /// <c>all-linear</c>. Default: the decoder's seven projections.</summary>
    [JsonPropertyName("lora_target_modules")] public string LoraTargetModules { get; init; } = DecoderProjections;
    [JsonPropertyName("use_rslora")] public bool UseRslora { get; init; }
    /// <summary>With LoRA: also write the base model with the adapter merged into it, in the released layout, to
    /// <c>output_dir/merged</c>.</summary>
    [JsonPropertyName("merge_lora")] public bool MergeLora { get; init; }

    /// <summary>The decoder's q/k/v/o and MLP projections (not the vision tower's MLP, whose names end alike).</summary>
    public const string DecoderProjections = @"model\.layers\.\d+\.(self_attn\.[qkvo]|mlp\.(gate|up|down))_proj";

    /// <summary>The LoRA adapters to train, or null when <see cref="LoraR"/> is 0.</summary>
    public LoraConfig? Lora => LoraR == 0 ? null : new LoraConfig
    {
        R = LoraR, LoraAlpha = LoraAlpha, LoraDropout = LoraDropout, UseRslora = UseRslora,
        TargetModules = IsPattern(LoraTargetModules) ? null : [.. LoraTargetModules.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)],
        TargetModulesPattern = IsPattern(LoraTargetModules) ? LoraTargetModules : null,
    };

    /// <summary>Whether lora_target_modules is one regular expression (or all-linear) rather than a comma-separated list.</summary>
    static bool IsPattern(string targets) =>
        targets.Equals(LoraConfig.AllLinear, StringComparison.OrdinalIgnoreCase) || targets.IndexOfAny(@"\^$*+?()[]{}|".ToCharArray()) >= 0;

    public TrainableSet TrainableSet => new(TuneMmLlm, TuneMmConnector, TuneMmVision, TuneMmSpatialEncoder)
    {
        SpatialEncoderLastBlocks = TuneMmSpatialEncoderLastBlocks, SpatialEncoderHeads = TuneMmSpatialEncoderHeads,
    };

    public SftDataOptions DataOptions => new()
    {
        VideoMaxFrames = VideoMaxFrames, VideoMinFrames = VideoMinFrames, BaseInterval = BaseInterval, VideoFrameFps = VideoFrameFps,
        VideoMinFramePixels = VideoMinFramePixels, VideoMaxFramePixels = VideoMaxFramePixels, ModelMaxLength = ModelMaxLength,
        DecodedVideoCache = DecodedVideoCache,
    };

    /// <summary>Most examples per_device_train_batch_size may put in one forward.</summary>
    public const int MaxBatchSize = 1024;

    /// <summary>Most videos decoded_video_cache may keep.</summary>
    public const int MaxDecodedVideoCache = 100_000;

    /// <summary>Most frames a video may be sampled to (the seed uses 16; more would not fit any model's context).</summary>
    public const int MaxVideoFrames = 1024;

    /// <summary>Most pixels a frame may be resized to: Qwen2.5-VL's own <c>max_pixels</c> (16384 × 28 × 28).</summary>
    public const int MaxFramePixels = 16384 * 28 * 28;

    /// <summary>The arguments by their JSON key (= flag) names, in declaration order.</summary>
    public static IReadOnlyList<(string Name, PropertyInfo Property)> Named { get; } = typeof(TrainingArguments).GetProperties()
        .Select(p => (Name: p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name, Property: p))
        .Where(a => a.Name != null).Select(a => (a.Name!, a.Property)).ToArray();

    /// <summary>Whether the argument may be null (unset): a nullable number or flag, or a string marked nullable.</summary>
    public static bool IsNullable(PropertyInfo property) =>
        Nullable.GetUnderlyingType(property.PropertyType) != null || new NullabilityInfoContext().Create(property).WriteState == NullabilityState.Nullable;

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
    static readonly JsonDocumentOptions DocumentOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>
    /// A JSON config file with the seed's argument names. Broken JSON is an error naming the line; every unknown,
    /// repeated or mistyped key (a string for a number, a fraction or an out-of-range number for an integer, a number too
    /// large for a double) is listed with its line, so one look fixes them all.
    /// </summary>
    public static TrainingArguments FromJsonFile(string path) => FromJsonFile(path, new TrainingArguments(), []);

    /// <summary>As <see cref="FromJsonFile(string)"/>, the arguments the file leaves out taken from <paramref name="defaults"/>;
    /// keys of <paramref name="otherSettings"/> (another record read from the same file, e.g. GRPO's) are checked against
    /// their own types and left out here.</summary>
    public static TrainingArguments FromJsonFile(string path, TrainingArguments defaults, IReadOnlyList<(string Name, PropertyInfo Property)> otherSettings) =>
        ReadJsonFile(path, Named, defaults, otherSettings);

    /// <summary>The settings of <paramref name="named"/> in a JSON config file over <paramref name="defaults"/>, every key
    /// (its own or <paramref name="otherSettings"/>') checked: unknown, repeated or mistyped keys are listed with their line.</summary>
    internal static T ReadJsonFile<T>(string path, IReadOnlyList<(string Name, PropertyInfo Property)> named, T defaults,
        IReadOnlyList<(string Name, PropertyInfo Property)> otherSettings)
    {
        byte[] bytes = File.ReadAllBytes(path);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes, DocumentOptions); }
        catch (JsonException e) { throw new InvalidDataException($"{path}:{e.LineNumber + 1}: not valid JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: a training config is a JSON object of arguments ({{\"learning_rate\": 7e-6, …}}), not {Describe(root)}.");
            var lines = KeyLines(bytes);
            var own = named.ToDictionary(a => a.Name, a => a.Property);
            var known = named.Concat(otherSettings).ToDictionary(a => a.Name, a => a.Property);
            var problems = new List<string>();
            var seen = new HashSet<string>();
            var values = JsonNode.Parse(JsonSerializer.Serialize(defaults, Json))!.AsObject();
            int index = 0;
            foreach (var key in root.EnumerateObject())
            {
                string where = $"{path}:{lines[index++]}";
                if (!seen.Add(key.Name)) problems.Add($"{where}: \"{key.Name}\" is given twice");
                else if (!known.TryGetValue(key.Name, out var property)) problems.Add($"{where}: unknown argument \"{key.Name}\"");
                else if (TypeProblem(key.Value, property) is string why) problems.Add($"{where}: {key.Name} {why}");
                else if (own.ContainsKey(key.Name)) values[key.Name] = JsonNode.Parse(key.Value.GetRawText());
            }
            if (problems.Count > 0)
                throw new InvalidDataException(string.Join(Environment.NewLine, problems) +
                    (problems.Any(p => p.Contains("unknown argument", StringComparison.Ordinal)) ? $"{Environment.NewLine}Known arguments: {string.Join(", ", known.Keys.Order(StringComparer.Ordinal))}." : ""));
            return values.Deserialize<T>(Json)!;
        }
    }

    /// <summary>The 1-based line of each top-level key, in order.</summary>
    static List<int> KeyLines(byte[] json)
    {
        var lines = new List<int>();
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        int line = 1;
        long counted = 0;
        while (reader.Read())
        {
            if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 1) continue;
            for (; counted < reader.TokenStartIndex; counted++) if (json[counted] == (byte)'\n') line++;
            lines.Add(line);
        }
        return lines;
    }

    /// <summary>Why a JSON value cannot be the argument's type; null when it can.</summary>
    static string? TypeProblem(JsonElement value, PropertyInfo property)
    {
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        if (value.ValueKind == JsonValueKind.Null) return IsNullable(property) ? null : "must not be null";
        if (type == typeof(string)) return value.ValueKind == JsonValueKind.String ? null : $"must be a string, not {Describe(value)}";
        if (type == typeof(bool)) return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : $"must be true or false, not {Describe(value)}";
        if (value.ValueKind != JsonValueKind.Number) return $"must be a number, not {Describe(value)}";
        if (type == typeof(int))
            return value.TryGetInt32(out _) ? null : $"must be a whole number from {int.MinValue} to {int.MaxValue}, not {value.GetRawText()}";
        return value.TryGetDouble(out double d) && double.IsFinite(d) ? null : $"{value.GetRawText()} is not a finite number";
    }

    static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => $"the string {value.GetRawText()}",
        JsonValueKind.Array => "a list",
        JsonValueKind.Object => "an object",
        JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        _ => value.GetRawText(),
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>
    /// Throws <see cref="ArgumentException"/> listing every argument that cannot work: missing paths, numbers out of
    /// range (a learning rate ≤ 0, no epochs, no frames, …), and an output folder that is, or lies inside, the folder the
    /// weights come from.
    /// </summary>
    public void Validate()
    {
        var problems = new List<string>();
        void Require(bool ok, string problem) { if (!ok) problems.Add(problem); }
        static string F(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        static bool Positive(double x) => x > 0 && double.IsFinite(x);

        Require(!string.IsNullOrEmpty(ModelNameOrPath), "model_name_or_path is required.");
        Require(!string.IsNullOrEmpty(DatasetUse), "dataset_use is required (annotation files, comma-separated).");
        if (!string.IsNullOrEmpty(DatasetUse))
        {
            try { SftAnnotations.ParseDatasetUse(DatasetUse); }
            catch (ArgumentException e) { problems.Add(e.Message); }
        }
        Require(!string.IsNullOrEmpty(OutputDir), "output_dir is required.");
        Require(!string.IsNullOrEmpty(ResumeFromCheckpoint), "resume_from_checkpoint must be auto, none or a checkpoint folder.");
        Require(Positive(LearningRate), $"learning_rate must be a positive number; got {F(LearningRate)}.");
        Require(MmProjectorLr is null || Positive(MmProjectorLr.Value),
            $"mm_projector_lr must be a positive number (or null for learning_rate's); got {F(MmProjectorLr ?? 0)}.");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), $"weight_decay must be 0 or more; got {F(WeightDecay)}.");
        Require(AdamBeta1 is >= 0 and < 1, $"adam_beta1 must be in [0, 1); got {F(AdamBeta1)}.");
        Require(AdamBeta2 is >= 0 and < 1, $"adam_beta2 must be in [0, 1); got {F(AdamBeta2)}.");
        Require(Positive(AdamEpsilon), $"adam_epsilon must be a positive number; got {F(AdamEpsilon)}.");
        Require(MaxSteps > 0 || Positive(NumTrainEpochs),
            $"num_train_epochs must be a positive number (or max_steps a positive step count); got num_train_epochs {F(NumTrainEpochs)}, max_steps {MaxSteps}.");
        Require(PerDeviceTrainBatchSize is >= 1 and <= MaxBatchSize, $"per_device_train_batch_size must be 1 to {MaxBatchSize}; got {PerDeviceTrainBatchSize}.");
        Require(TuneMmSpatialEncoderLastBlocks >= 0, $"tune_mm_spatial_encoder_last_blocks must be 0 (none) or more; got {TuneMmSpatialEncoderLastBlocks}.");
        Require(GradientAccumulationSteps >= 1, $"gradient_accumulation_steps must be at least 1; got {GradientAccumulationSteps}.");
        Require(MaxGradNorm >= 0 && double.IsFinite(MaxGradNorm), $"max_grad_norm must be 0 (no clipping) or more; got {F(MaxGradNorm)}.");
        Require(WarmupRatio is >= 0 and <= 1, $"warmup_ratio must be in [0, 1]; got {F(WarmupRatio)}.");
        Require(LrSchedulerType == "cosine", $"lr_scheduler_type '{LrSchedulerType}' is not supported (the seed uses cosine).");
        Require(SaveSteps >= 0 && double.IsFinite(SaveSteps) && (SaveSteps < 1 || SaveSteps == Math.Floor(SaveSteps) && SaveSteps <= int.MaxValue),
            $"save_steps must be 0 (only the end), a fraction of the run below 1, or a whole number of steps; got {F(SaveSteps)}.");
        Require(LoggingSteps >= 0, $"logging_steps must be 0 or more; got {LoggingSteps}.");
        Require(VideoMinFrames is >= 1 and <= MaxVideoFrames, $"video_min_frames must be 1 to {MaxVideoFrames}; got {VideoMinFrames}.");
        Require(VideoMaxFrames is >= 1 and <= MaxVideoFrames, $"video_max_frames must be 1 to {MaxVideoFrames}; got {VideoMaxFrames}.");
        Require(VideoMinFrames <= VideoMaxFrames, $"video_min_frames ({VideoMinFrames}) exceeds video_max_frames ({VideoMaxFrames}).");
        Require(Positive(BaseInterval), $"base_interval must be a positive number of seconds; got {F(BaseInterval)}.");
        Require(VideoFrameFps is null || Positive(VideoFrameFps.Value), $"video_frame_fps must be a positive number (or null); got {F(VideoFrameFps ?? 0)}.");
        Require(VideoMinFramePixels is >= 1 and <= MaxFramePixels, $"video_min_frame_pixels must be 1 to {MaxFramePixels}; got {VideoMinFramePixels}.");
        Require(VideoMaxFramePixels is >= 1 and <= MaxFramePixels, $"video_max_frame_pixels must be 1 to {MaxFramePixels}; got {VideoMaxFramePixels}.");
        Require(VideoMinFramePixels <= VideoMaxFramePixels, $"video_min_frame_pixels ({VideoMinFramePixels}) exceeds video_max_frame_pixels ({VideoMaxFramePixels}).");
        Require(ModelMaxLength >= 1, $"model_max_length must be at least 1; got {ModelMaxLength}.");
        Require(DecodedVideoCache is >= 0 and <= MaxDecodedVideoCache, $"decoded_video_cache must be 0 to {MaxDecodedVideoCache}; got {DecodedVideoCache}.");
        Require(LoraR >= 0, $"lora_r must be 0 (no LoRA) or a positive rank; got {LoraR}.");
        if (Lora is { } lora)
        {
            try { lora.Validate(); }
            catch (ArgumentException e) { problems.AddRange(e.Message.Split(Environment.NewLine).Select(m => "LoRA: " + m)); }
            Require(!(GradientCheckpointing && LoraDropout > 0),
                $"lora_dropout {F(LoraDropout)} with gradient_checkpointing: the recomputed layers would draw other dropout masks than the forward did. Set lora_dropout 0 or drop gradient_checkpointing.");
        }
        Require(!MergeLora || LoraR > 0, "merge_lora needs LoRA (lora_r > 0).");
        if (problems.Count == 0) problems.AddRange(FolderProblems());
        if (problems.Count > 0) throw new ArgumentException(string.Join(Environment.NewLine, problems));
    }

    /// <summary>An output folder that is, or lies inside, the base model's folder or the checkpoint resumed from (its
    /// weights would be overwritten), or that holds the base model (--force-new or save_total_limit would move or delete it).</summary>
    IEnumerable<string> FolderProblems()
    {
        string output = FullFolder(OutputDir), model = FullFolder(ModelNameOrPath);
        if (IsSameOrInside(output, model))
            yield return $"output_dir {OutputDir} is {(output == model ? "" : "inside ")}the base model's folder {ModelNameOrPath}: saving would overwrite " +
                         "the weights training starts from. Pass another --output_dir.";
        else if (IsSameOrInside(model, output))
            yield return $"model_name_or_path {ModelNameOrPath} lies inside output_dir {OutputDir}, where --force-new would move it aside and " +
                         "save_total_limit could delete it. To continue that run, pass --resume_from_checkpoint with the checkpoint; " +
                         "to start a new one from it, pass another --output_dir.";
        if (ResumeFromCheckpoint is not ("auto" or "none") && IsSameOrInside(output, FullFolder(ResumeFromCheckpoint)))
            yield return $"output_dir {OutputDir} is {(output == FullFolder(ResumeFromCheckpoint) ? "" : "inside ")}the checkpoint resumed from " +
                         $"({ResumeFromCheckpoint}): saving would overwrite it. Pass its run's folder or another --output_dir.";
    }

    /// <summary>The absolute folder path, symbolic links resolved, without a trailing separator.</summary>
    internal static string FullFolder(string path)
    {
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        // Resolve the deepest existing ancestor's links, so a link to the model folder is the model folder.
        string existing = full, rest = "";
        while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is { } parent)
        {
            rest = Path.Combine(Path.GetFileName(existing), rest);
            existing = parent;
        }
        if (!Directory.Exists(existing)) return full;
        string resolved = ResolveLinks(existing);
        return Path.TrimEndingDirectorySeparator(rest.Length == 0 ? resolved : Path.Combine(resolved, rest));
    }

    static string ResolveLinks(string existingFolder)
    {
        string? parent = Path.GetDirectoryName(existingFolder);
        string folder = parent is null ? existingFolder : Path.Combine(ResolveLinks(parent), Path.GetFileName(existingFolder));
        return new DirectoryInfo(folder).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? folder;
    }

    internal static bool IsSameOrInside(string path, string folder) =>
        path == folder || path.StartsWith(folder.EndsWith(Path.DirectorySeparatorChar) ? folder : folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);
}
