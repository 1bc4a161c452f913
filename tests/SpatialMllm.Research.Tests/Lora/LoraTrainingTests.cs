using System.Diagnostics;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Demo;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Notebooks;
using SpatialMllm.Research.Tests.Cli;
using SpatialMllm.Research.Tests.Training;
using SpatialMllm.Research.Training;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Lora;

/// <summary>Fine-tuning with LoRA: the SFT loop trains adapters only, checkpoints and resumes them in PEFT's layout
/// (that a LoRA fine-tune learns what a full one learns: <c>FineTuneDemoTests</c>).</summary>
public class LoraTrainingTests
{
    [Fact]
    public void Train_with_lora_saves_PEFT_adapters_resumes_them_and_merges_on_request()
    {
        string data = SftTrainerTests.Data();
        string straight = TestPaths.NewTempDir("lora-train-straight"), stopped = TestPaths.NewTempDir("lora-train-stopped");
        TrainingArguments Args(string dir) => SftTrainerTests.Args(data, dir) with
        {
            LoraR = 4, LoraAlpha = 8, LoraDropout = 0, LoraTargetModules = "q_proj,v_proj,down_proj", LearningRate = 3e-2,
        };

        var lines = new List<string>();
        var first = new SftTrainer(Args(straight) with { MergeLora = true }, lines.Add).Run();
        Assert.True(first.Steps[^1].Loss < first.Steps[0].Loss, "the loss falls");
        Assert.Contains(lines, l => l.Contains("trainable tensors", StringComparison.Ordinal));
        string checkpoint = Path.Combine(straight, "checkpoint-2");
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors", SftTrainer.OptimizerFile, "run.json", SftTrainer.StateFile],
            Directory.GetFiles(checkpoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.True(File.Exists(Path.Combine(straight, "adapter_model.safetensors")));
        Assert.False(File.Exists(Path.Combine(straight, "model.safetensors")));
        using (var optimizer = SafetensorsFile.Open(Path.Combine(checkpoint, SftTrainer.OptimizerFile)))
            Assert.All(optimizer.Entries.Keys, k => Assert.Matches(@"^exp_avg(_sq)?\..*\.lora_[AB]\.weight$", k));

        // Stopped after step 3 (the step-2 checkpoint kept), then run again: the same adapter as the run without a stop.
        using var cancel = new CancellationTokenSource();
        new SftTrainer(Args(stopped), line => { if (line.StartsWith("step 3/", StringComparison.Ordinal)) cancel.Cancel(); }).Run(cancel.Token);
        var resumedLines = new List<string>();
        var resumed = new SftTrainer(Args(stopped), resumedLines.Add).Run();
        Assert.Equal(2, resumed.StartStep);
        Assert.Equal(first.Steps[^1].Loss!.Value, resumed.Steps[^1].Loss!.Value, 5);
        using (var a = SafetensorsFile.Open(Path.Combine(straight, "adapter_model.safetensors")))
        using (var b = SafetensorsFile.Open(Path.Combine(stopped, "adapter_model.safetensors")))
            foreach (string key in a.Entries.Keys)
            {
                using var x = a.Read(key);
                using var y = b.Read(key);
                Assert.True(x.allclose(y, rtol: 0, atol: 1e-5), $"{key} differs after the resume");
            }

        // The merged model is the base model with the adapter in its weights: it answers as base + adapter does.
        using var frames = TinyFixture.Read("frames_uint8_tchw");
        using var merged = SpatialMllmModel.Load(Path.Combine(straight, SftTrainer.MergedFolder), torch.CPU);
        using var adapted = SpatialMllmModel.Load(Path.Combine(data, "model"), torch.CPU);
        LoraModel.Load(adapted, straight);
        using var mergedFeatures = merged.EncodeFrames(frames);
        using var adaptedFeatures = adapted.EncodeFrames(frames);
        var question = TestSupport.WeightEdits.Question;
        var options = TestSupport.WeightEdits.Options(share: true);
        double difference = TestSupport.WeightEdits.MaxDifference(
            TestSupport.WeightEdits.Rows(merged.Generate(merged.PromptIds(mergedFeatures, question), mergedFeatures, options)),
            TestSupport.WeightEdits.Rows(adapted.Generate(adapted.PromptIds(adaptedFeatures, question), adaptedFeatures, options)));
        Assert.True(difference <= 1e-4, $"the merged model's logits differ from base + adapter by {difference:E2}");
    }

    [Fact]
    public void Lora_arguments_are_checked_before_anything_starts()
    {
        string data = SftTrainerTests.Data(), dir = TestPaths.NewTempDir("lora-args");
        string[] Common(params string[] more) => ["train", "--model_name_or_path", Path.Combine(data, "model"), "--dataset_use", Path.Combine(data, "train.jsonl"),
            "--output_dir", Path.Combine(dir, "out"), "--device", "cpu", .. more];
        foreach (var (args, expected) in new (string[], string)[]
                 {
                     (["--lora_r", "-1"], "lora_r must be 0 (no LoRA) or a positive rank; got -1."),
                     (["--lora_r", "8", "--lora_dropout", "1.5"], "LoRA: lora_dropout must be in [0, 1); got 1.5."),
                     (["--lora_r", "8", "--lora_alpha", "0"], "LoRA: lora_alpha must be a positive number; got 0."),
                     (["--lora_r", "8", "--lora_target_modules", "q_proj("], "LoRA: target_modules 'q_proj(' is not a valid regular expression"),
                     (["--lora_r", "8", "--gradient_checkpointing"], "lora_dropout 0.05 with gradient_checkpointing"),
                     (["--merge_lora"], "merge_lora needs LoRA (lora_r > 0)."),
                 })
        {
            var (code, output, error) = CliInvocation.Invoke(Common(args));
            Assert.True(code != 0, $"{string.Join(' ', args)} was accepted: {output}");
            Assert.Contains(expected, output + error);
        }
        // The SFT loss runs VGGT's aggregator, not its heads: adapters on a head would never learn.
        var (headCode, headOutput, headError) = CliInvocation.Invoke(Common("--lora_r", "4", "--lora_target_modules", "attn.qkv", "--max_steps", "1"));
        Assert.NotEqual(0, headCode);
        Assert.Contains("adapts VGGT's spatial_encoder.vggt_model.camera_head.", headOutput + headError);
        var (code1, output1, error1) = CliInvocation.Invoke(Common("--lora_r", "4", "--lora_target_modules", "aggregator.frame_blocks.0.attn.qkv",
            "--lora_dropout", "0", "--max_steps", "1", "--warmup_ratio", "0", "--learning_rate", "1e-2",
            "--video_min_frames", "4", "--video_max_frames", "4", "--video_min_frame_pixels", "9408", "--video_max_frame_pixels", "9408"));
        Assert.True(code1 == 0, output1 + error1);
        using var adapter = SafetensorsFile.Open(Path.Combine(dir, "out", "adapter_model.safetensors"));
        using var loraB = adapter.Read("base_model.model.spatial_encoder.vggt_model.aggregator.frame_blocks.0.attn.qkv.lora_B.weight");
        Assert.True(loraB.abs().max().item<float>() > 0, "the aggregator's adapter was not trained");
    }
}
