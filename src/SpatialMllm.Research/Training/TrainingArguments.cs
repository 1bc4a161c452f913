using System.Text.Json;
using System.Text.Json.Serialization;

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
    [JsonPropertyName("per_device_train_batch_size")] public int PerDeviceTrainBatchSize { get; init; } = 1;
    [JsonPropertyName("gradient_accumulation_steps")] public int GradientAccumulationSteps { get; init; } = 8;
    [JsonPropertyName("max_grad_norm")] public double MaxGradNorm { get; init; } = 1.0;
    [JsonPropertyName("warmup_ratio")] public double WarmupRatio { get; init; } = 0.03;
    [JsonPropertyName("lr_scheduler_type")] public string LrSchedulerType { get; init; } = "cosine";
    /// <summary>Below 1: a fraction of the total steps (the seed saves every 0.0625); else a step count; 0: only at the end.</summary>
    [JsonPropertyName("save_steps")] public double SaveSteps { get; init; } = 0.0625;
    /// <summary>Keep at most this many checkpoint-N folders (oldest deleted); null: all.</summary>
    [JsonPropertyName("save_total_limit")] public int? SaveTotalLimit { get; init; }
    [JsonPropertyName("logging_steps")] public int LoggingSteps { get; init; } = 1;
    [JsonPropertyName("seed")] public int Seed { get; init; } = 42;
    [JsonPropertyName("tune_mm_llm")] public bool TuneMmLlm { get; init; } = true;
    [JsonPropertyName("tune_mm_connector")] public bool TuneMmConnector { get; init; } = true;
    [JsonPropertyName("tune_mm_vision")] public bool TuneMmVision { get; init; }
    [JsonPropertyName("tune_mm_spatial_encoder")] public bool TuneMmSpatialEncoder { get; init; }
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
    /// <summary>"auto" (default): resume from the newest complete checkpoint-N in output_dir, if any; a folder: from
    /// that one; "none": start over.</summary>
    [JsonPropertyName("resume_from_checkpoint")] public string ResumeFromCheckpoint { get; init; } = "auto";
    /// <summary>cpu, cuda or cuda:N; null: cuda when available.</summary>
    [JsonPropertyName("device")] public string? Device { get; init; }

    public TrainableSet TrainableSet => new(TuneMmLlm, TuneMmConnector, TuneMmVision, TuneMmSpatialEncoder);

    public SftDataOptions DataOptions => new()
    {
        VideoMaxFrames = VideoMaxFrames, VideoMinFrames = VideoMinFrames, BaseInterval = BaseInterval, VideoFrameFps = VideoFrameFps,
        VideoMinFramePixels = VideoMinFramePixels, VideoMaxFramePixels = VideoMaxFramePixels, ModelMaxLength = ModelMaxLength,
    };

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>A JSON config file with the seed's argument names; unknown keys are an error naming them.</summary>
    public static TrainingArguments FromJsonFile(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        var known = typeof(TrainingArguments).GetProperties().Select(p => p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), false).OfType<JsonPropertyNameAttribute>().FirstOrDefault()?.Name).OfType<string>().ToHashSet();
        var unknown = doc.RootElement.EnumerateObject().Select(p => p.Name).Where(n => !known.Contains(n)).ToList();
        if (unknown.Count > 0) throw new InvalidDataException($"{path}: unknown argument(s) {string.Join(", ", unknown)}; known: {string.Join(", ", known.Order())}.");
        return doc.RootElement.Deserialize<TrainingArguments>(Json) ?? throw new InvalidDataException($"{path}: empty config.");
    }

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Throws naming the first argument that cannot work.</summary>
    public void Validate()
    {
        if (string.IsNullOrEmpty(ModelNameOrPath)) throw new ArgumentException("model_name_or_path is required.");
        if (string.IsNullOrEmpty(DatasetUse)) throw new ArgumentException("dataset_use is required (annotation files, comma-separated).");
        if (string.IsNullOrEmpty(OutputDir)) throw new ArgumentException("output_dir is required.");
        if (PerDeviceTrainBatchSize != 1) throw new ArgumentException("per_device_train_batch_size must be 1 (the seed's; use gradient_accumulation_steps).");
        if (GradientAccumulationSteps < 1) throw new ArgumentException("gradient_accumulation_steps must be at least 1.");
        if (LrSchedulerType != "cosine") throw new ArgumentException($"lr_scheduler_type '{LrSchedulerType}' is not supported (the seed uses cosine).");
        if (VideoMinFrames > VideoMaxFrames) throw new ArgumentException("video_min_frames exceeds video_max_frames.");
    }
}
