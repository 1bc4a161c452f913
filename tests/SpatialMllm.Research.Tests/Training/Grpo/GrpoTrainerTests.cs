using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Runs;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Training.Grpo;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training.Grpo;

/// <summary>GRPO on the tiny checkpoint, on the CPU: rollouts (seeded, batched = one at a time), the loss's forward
/// against the model's own likelihoods, and a short run on synthetic questions whose reward rises.</summary>
public class GrpoTrainerTests(ITestOutputHelper output)
{
    static readonly object Setup = new();
    static string? _data;

    /// <summary>A tiny checkpoint, a synthetic video, and synthetic VSI-Bench questions with their videos (made once).</summary>
    static string Data()
    {
        lock (Setup)
        {
            if (_data != null) return _data;
            string dir = TestPaths.NewTempDir("grpo-data");
            TinyCheckpoint.Create(Path.Combine(dir, "model"));
            SyntheticVideo.Create(Path.Combine(dir, "room.mp4"));
            SyntheticBenchmark.Write(Path.Combine(dir, "synthetic"), [3], new SyntheticSceneOptions(Frames: 16, Width: 112, Height: 84), perType: 1);
            return _data = dir;
        }
    }

    static GenerationOptions Sampling(SpatialMllmModel model, ulong seed) =>
        new(model.DefaultGeneration().EosTokenIds, MaxNewTokens: 6, DoSample: true, Temperature: 1.0, TopK: 0, Seed: seed);

    [Fact]
    public void Rollouts_are_reproducible_under_a_seed_and_a_batch_samples_what_each_row_samples_alone()
    {
        string data = Data();
        using var model = SpatialMllmModel.Load(Path.Combine(data, "model"), torch.CPU);
        using var features = model.EncodeVideo(Path.Combine(data, "room.mp4"), FrameSampler.Uniform(4));
        var prompt = model.PromptIds(features, "How many chairs are in this room?");
        var batched = model.SampleCompletions(features, prompt, 4, Sampling(model, 5));
        var again = model.SampleCompletions(features, prompt, 4, Sampling(model, 5));
        var alone = model.SampleCompletions(features, prompt, 4, Sampling(model, 5), batched: false);
        var other = model.SampleCompletions(features, prompt, 4, Sampling(model, 6));
        foreach (var a in batched) output.WriteLine(string.Join(" ", a.GeneratedIds));
        Assert.Equal(batched.Select(a => a.GeneratedIds), again.Select(a => a.GeneratedIds));
        Assert.Equal(batched.Select(a => a.GeneratedIds), alone.Select(a => a.GeneratedIds));
        Assert.NotEqual(batched.Select(a => a.GeneratedIds), other.Select(a => a.GeneratedIds));
        Assert.True(batched.Select(a => string.Join(",", a.GeneratedIds)).Distinct().Count() > 1, "the rows sample different completions");
        // Row b is what Generate samples alone with seed 5 + b.
        var third = model.Generate(features, prompt, new AnswerOptions(Generation: Sampling(model, 7)));
        Assert.Equal(third.GeneratedIds, batched[2].GeneratedIds);
    }

    [Fact]
    public void The_loss_forward_gives_the_models_own_log_likelihoods_of_the_completions()
    {
        string data = Data();
        using var model = SpatialMllmModel.Load(Path.Combine(data, "model"), torch.CPU);
        var question = new GrpoQuestion("q", Path.Combine(data, "room.mp4"), "How many chairs are in this room?", "2");
        using var group = GrpoGroup.Sample(model, question, new GrpoConfig { NumGenerations = 3, MaxCompletionLength = 5, Frames = 4 }, seed: 11);
        using var scope = torch.NewDisposeScope();
        var (logProbs, _) = CompletionLogProbs.Compute(model, group.VisualTokens, group.PromptIds, group.Video.Grid, group.Video.SecondPerGridT,
            group.CompletionIds, temperature: 1.0);
        using var features = VideoFeatures.FromTensors(group.VisualTokens, group.Video.Grid, group.Video.SecondPerGridT);
        var expected = model.LogLikelihood(features, group.PromptIds, [.. group.Completions.Select(c => c.TokenIds)]);
        for (int k = 0; k < 3; k++)
        {
            var row = logProbs[k].data<float>().ToArray();
            Assert.Equal(expected[k].TokenLogProbs.Count, group.Completions[k].TokenIds.Count);
            for (int j = 0; j < expected[k].TokenLogProbs.Count; j++) Assert.Equal(expected[k].TokenLogProbs[j], row[j], 4);
        }
        // At temperature 2 the logits are halved before log_softmax (TRL's division).
        var (hot, _) = CompletionLogProbs.Compute(model, group.VisualTokens, group.PromptIds, group.Video.Grid, group.Video.SecondPerGridT,
            group.CompletionIds, temperature: 2.0);
        Assert.False(hot.allclose(logProbs), "temperature changes the log-probabilities");
    }

    [Fact]
    public void A_short_run_on_synthetic_questions_raises_a_learnable_reward_and_keeps_the_training_contract()
    {
        string data = Data(), dir = TestPaths.NewTempDir("grpo-run");
        var args = GrpoConfig.DefaultTrainingArguments with
        {
            ModelNameOrPath = Path.Combine(data, "model"), DatasetUse = Path.Combine(data, "synthetic", "test.jsonl"), OutputDir = dir,
            LearningRate = 3e-3, GradientAccumulationSteps = 2, MaxSteps = 16, SaveSteps = 6, Device = "cpu", GradientCheckpointing = false,
            TuneMmConnector = false,
        };
        var config = new GrpoConfig
        {
            NumGenerations = 16, MaxCompletionLength = 2, Frames = 4, TopK = 2, Beta = 0.01, NumIterations = 2, LossType = GrpoLossTypes.Grpo,
        };
        // Trivially learnable: sampling from the two likeliest first tokens, reward 1 for the one the untrained model ranks
        // first (about half of the completions at the start).
        var likeliest = new Dictionary<string, int>();
        using (var model = SpatialMllmModel.Load(args.ModelNameOrPath, torch.CPU))
            foreach (var q in GrpoTrainer.LoadQuestions(args.DatasetUse, null))
            {
                using var greedy = GrpoGroup.Sample(model, q, config with { TopK = 1, NumGenerations = 2 }, seed: 0);
                likeliest[q.Id] = greedy.Completions[0].TokenIds[0];
            }
        var first = new Reward("likeliest_first_token", c => c.TokenIds[0] == likeliest[c.Question.Id] ? 1.0 : 0.0);
        var summary = new GrpoTrainer(args, config, [first, Rewards.Accuracy()], output.WriteLine).Run();
        Assert.Equal(16, summary.FinalStep);
        var rewards = summary.Steps.Select(s => s.Metrics["rewards/likeliest_first_token/mean"]!.Value).ToList();
        // Steps come in pairs (num_iterations 2) sharing a rollout batch: the first two batches against the last two.
        double before = rewards.Take(4).Average(), after = rewards.TakeLast(4).Average();
        output.WriteLine($"reward {before:F3} → {after:F3}");
        // Typically +0.22. libtorch's CPU reductions may round differently under load, and a sampled token follows a
        // rounding: the margin leaves room for that while a reward that does not rise still fails.
        Assert.True(after > before + 0.1, $"the learnable reward rises ({before:F3} → {after:F3})");
        // Each rollout batch serves num_iterations steps: the first of them is on-policy (ratio 1, nothing clipped).
        Assert.All(summary.Steps.Where(s => s.Step % 2 == 1), s => Assert.Equal(0, s.Metrics["clip_ratio/region_mean"]));
        Assert.All(summary.Steps, s => Assert.True(s.Metrics["kl"] >= 0));

        var log = File.ReadAllLines(Path.Combine(dir, SftTrainer.LogFile));
        Assert.StartsWith("step,epoch,loss,learning_rate,grad_norm,reward,reward_std,rewards/likeliest_first_token/mean", log[0]);
        Assert.Equal(17, log.Length);
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(dir, "checkpoint-6", SftTrainer.OptimizerFile)));
        Assert.Equal("grpo", RunManifest.Read(Path.Combine(dir, TrainingRunManifest.FileName)).Fields["method"]);
        // Another beta in the same folder is another run: refused, naming the difference.
        var refused = Assert.Throws<RunManifestMismatchException>(() => new GrpoTrainer(args, config with { Beta = 0.1 }, [first, Rewards.Accuracy()], output.WriteLine).Run());
        Assert.Contains("grpo.beta", refused.Message);
    }

    [Fact]
    public void The_reward_is_logged_per_question_type()
    {
        string data = Data(), dir = TestPaths.NewTempDir("grpo-types");
        var args = GrpoConfig.DefaultTrainingArguments with
        {
            ModelNameOrPath = Path.Combine(data, "model"), DatasetUse = Path.Combine(data, "synthetic", "test.jsonl"), OutputDir = dir,
            GradientAccumulationSteps = 4, MaxSteps = 2, SaveSteps = 0, Device = "cpu", GradientCheckpointing = false,
        };
        var config = new GrpoConfig { NumGenerations = 2, MaxCompletionLength = 1, Frames = 4, Beta = 0 };
        var types = GrpoTrainer.LoadQuestions(args.DatasetUse, null).Select(q => q.VsiBench!.QuestionType).Distinct().Order(StringComparer.Ordinal).ToList();
        // A reward that is the question type's rank: each type's mean is its rank, its spread 0.
        var rank = new Reward("type_rank", c => types.IndexOf(c.Question.VsiBench!.QuestionType));
        var summary = new GrpoTrainer(args, config, [rank], output.WriteLine).Run();

        Assert.True(types.Count > 1, "the synthetic questions span several types");
        var header = File.ReadAllLines(Path.Combine(dir, SftTrainer.LogFile))[0].Split(',');
        Assert.All(types, t => Assert.Contains($"rewards_by_type/{t}/mean", header));
        foreach (var step in summary.Steps)
        {
            var asked = types.Where(t => step.Metrics[$"rewards_by_type/{t}/mean"] is not null).ToList();
            Assert.NotEmpty(asked);
            foreach (var t in asked)
            {
                Assert.Equal(types.IndexOf(t), step.Metrics[$"rewards_by_type/{t}/mean"]);
                Assert.Equal(0, step.Metrics[$"rewards_by_type/{t}/std"]);
            }
            Assert.InRange(step.Metrics["reward"]!.Value, asked.Min(types.IndexOf), asked.Max(types.IndexOf));
        }
    }

    [Fact]
    public void Grpo_with_lora_trains_the_adapters_against_the_base_model_with_its_adapters_off()
    {
        string data = Data(), dir = TestPaths.NewTempDir("grpo-lora");
        string baseWeights = Path.Combine(data, "model", "model.safetensors");
        byte[] baseBefore = File.ReadAllBytes(baseWeights);
        var args = GrpoConfig.DefaultTrainingArguments with
        {
            ModelNameOrPath = Path.Combine(data, "model"), DatasetUse = Path.Combine(data, "synthetic", "test.jsonl"), OutputDir = dir,
            LearningRate = 1e-2, GradientAccumulationSteps = 2, MaxSteps = 3, Device = "cpu", GradientCheckpointing = false,
            LoraR = 4, LoraAlpha = 8, LoraDropout = 0,
        };
        var config = new GrpoConfig { NumGenerations = 8, MaxCompletionLength = 2, Frames = 4, TopK = 8, Beta = 0.5, LossType = GrpoLossTypes.Grpo };
        var reward = new Reward("even_first_token", c => c.TokenIds[0] % 2 == 0 ? 1.0 : 0.0);
        var summary = new GrpoTrainer(args, config, [reward, Rewards.Accuracy()], output.WriteLine).Run();
        var kl = summary.Steps.Select(s => s.Metrics["kl"]!.Value).ToList();
        output.WriteLine("kl " + string.Join(" ", kl.Select(k => k.ToString("E2"))));
        // A new adapter's lora_B is zero: the policy is the reference at first, and moves away once the adapters train.
        Assert.True(kl[0] < 1e-6, $"kl at the first step {kl[0]}");
        Assert.True(kl[^1] > 1e-6, $"kl at the last step {kl[^1]}");
        Assert.True(File.Exists(Path.Combine(dir, "adapter_model.safetensors")));
        Assert.False(File.Exists(Path.Combine(dir, "model.safetensors")));
        Assert.Equal(baseBefore, File.ReadAllBytes(baseWeights));
    }

    [Fact]
    public void Rewards_score_VSI_Bench_answers_with_the_benchmarks_metric_and_the_R1_format_by_full_match()
    {
        var numeric = new VsiBenchQuestion(1, "synthetic", "s", "object_counting", "How many chairs?", null, "4", null);
        var choice = new VsiBenchQuestion(2, "synthetic", "s", "object_rel_direction_easy", "Where?", ["A. left", "B. right"], "B", null);
        GrpoCompletion C(VsiBenchQuestion q, string text) => new(new GrpoQuestion("q", "v", "p", q.GroundTruth, q), text, [1], false);
        var accuracy = Rewards.Accuracy();
        Assert.Equal(1.0, accuracy.Score(C(numeric, "4")));
        // MRA: |5 − 4| / 4 = 0.25 is below 5 of the 10 thresholds 0.05…0.5.
        Assert.Equal(0.5, accuracy.Score(C(numeric, "<think>more or less</think><answer>5</answer>"))!.Value, 6);
        Assert.Equal(1.0, accuracy.Score(C(choice, "<think>it is to the right</think>\n<answer>B</answer>")));
        Assert.Equal(0.0, accuracy.Score(C(choice, "A")));
        Assert.Null(accuracy.Score(new GrpoCompletion(new GrpoQuestion("q", "v", "p", "x"), "x", [1], false)));
        Assert.Equal(1.0, Rewards.Format.Score(C(choice, "<think>a\nb</think>\n<answer>B</answer>")));
        Assert.Equal(0.0, Rewards.Format.Score(C(choice, "<think>a</think><answer>B</answer> and more")));
        Assert.Equal(0.0, Rewards.Format.Score(C(choice, "<answer>B</answer>")));
    }
}
