using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Tests.Cli;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Verification;
using TorchSharp;
using TorchSharp.Modules;
using AdamW = SpatialMllm.Research.Training.AdamW;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>A trainable VGGT (tune_mm_spatial_encoder and finer) and VGGT's own training losses.</summary>
public class VggtTrainingTests(ITestOutputHelper output)
{
    /// <summary>Where the reference's gradient fixture is committed (environment/fixtures/make_vggt_train_fixture.py writes it).</summary>
    internal static string FixtureFolder => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "vggt-train");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sft_and_vggt_loss_gradients_match_the_reference(bool gradientCheckpointing)
    {
        Assert.SkipUnless(File.Exists(Path.Combine(FixtureFolder, VggtTrainingFixtureVerifier.FileName)),
            $"{FixtureFolder} has no {VggtTrainingFixtureVerifier.FileName} yet: it is made on the GPU machine by environment/fixtures/make_vggt_train_fixture.py.");
        var checks = VggtTrainingFixtureVerifier.Verify(FixtureFolder, TestPaths.TinyFixture, gradientCheckpointing: gradientCheckpointing);
        foreach (var c in checks) output.WriteLine($"{c.Name}: abs {c.MaxAbsError:E2} rel {c.MaxRelError:E2} {(c.Passed ? "pass" : "FAIL " + c.Note)}");
        Assert.Contains(checks, c => c.Name.StartsWith("grad.spatial_encoder.vggt_model.aggregator.global_blocks.", StringComparison.Ordinal));
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: {c.MaxRelError:E2} {c.Note}"));
    }

    static Dictionary<string, Parameter> AggregatorParameters(SpatialMllmModel model) =>
        model.spatial_encoder!.vggt_model.aggregator.named_parameters().ToDictionary(p => p.name, p => p.parameter);

    [Fact]
    public void The_sft_gradient_of_vggt_is_the_loss_slope_along_it()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU, ScalarType.Float32);
        var trainable = new TrainableSet(TuneSpatialEncoder: true).Apply(model);
        using var example = TinyFixture.FirstTrainingExample();
        var loss = SftObjective.Loss(model, example);
        loss.backward();
        double baseLoss = loss.item<float>();

        var vggt = trainable.Where(p => p.Key.StartsWith(VggtModel.CheckpointPrefix, StringComparison.Ordinal)).ToList();
        var withGrad = vggt.Where(p => p.Parameter.grad is not null).ToList();
        // The SFT loss reaches the aggregator (every block, the tokens, the DINO patch embed) but not the heads.
        Assert.All(vggt.Where(p => p.Key.Contains(".aggregator.frame_blocks.") || p.Key.Contains(".aggregator.global_blocks.") || p.Key.EndsWith("camera_token")),
            p => Assert.True(p.Parameter.grad is { } g && g.abs().max().item<float>() > 0, $"{p.Key} has no gradient"));
        Assert.All(vggt.Where(p => p.Key.Contains("_head.")), p => Assert.Null(p.Parameter.grad));

        // Central difference along the normalised gradient of VGGT alone: the slope is the gradient's norm.
        using var noGrad = torch.no_grad();
        double norm = Math.Sqrt(withGrad.Sum(p => p.Parameter.grad!.square().sum().item<float>()));
        const double h = 1e-2;
        double LossAt(double step)
        {
            foreach (var p in withGrad) p.Parameter.add_(p.Parameter.grad!, alpha: step / norm);
            double value = SftObjective.Loss(model, example).item<float>();
            foreach (var p in withGrad) p.Parameter.add_(p.Parameter.grad!, alpha: -step / norm);
            return value;
        }
        double plus = LossAt(h), minus = LossAt(-h);
        double slope = (plus - minus) / (2 * h);
        output.WriteLine($"loss {baseLoss:F6}; |grad VGGT| {norm:E4}; central difference {slope:E4}");
        Assert.True(Math.Abs(slope - norm) < 0.02 * norm, $"slope {slope} vs gradient norm {norm}");
        Assert.True(minus < baseLoss && baseLoss < plus, "a step against the gradient lowers the loss");
    }

    [Fact]
    public void Finer_sets_train_the_last_block_pairs_or_the_heads_and_leave_layer_norms_undecayed()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU, ScalarType.Float32);
        int depth = model.spatial_encoder!.vggt_model.aggregator.Depth;
        const string prefix = VggtModel.CheckpointPrefix;
        var lastOne = new TrainableSet(TuneLanguage: false, TuneConnector: false) { SpatialEncoderLastBlocks = 1 }.Apply(model);
        Assert.NotEmpty(lastOne);
        Assert.All(lastOne, p => Assert.Matches($@"^{prefix.Replace(".", @"\.")}aggregator\.(frame|global)_blocks\.{depth - 1}\.", p.Key));
        Assert.Equal(2 * model.spatial_encoder.vggt_model.aggregator.frame_blocks[0].parameters().Count(), lastOne.Count);
        Assert.All(lastOne, p => Assert.Equal(ParameterGroup.Language, p.Group)); // the seed's create_optimizer: the default group
        Assert.False(lastOne.Single(p => p.Key.EndsWith($"frame_blocks.{depth - 1}.norm1.weight")).WeightDecay);
        Assert.False(lastOne.Single(p => p.Key.EndsWith($"frame_blocks.{depth - 1}.attn.q_norm.weight")).WeightDecay);
        Assert.True(lastOne.Single(p => p.Key.EndsWith($"frame_blocks.{depth - 1}.attn.qkv.weight")).WeightDecay);
        Assert.True(lastOne.Single(p => p.Key.EndsWith($"frame_blocks.{depth - 1}.ls1.gamma")).WeightDecay);

        var heads = new TrainableSet(TuneLanguage: false, TuneConnector: false) { SpatialEncoderHeads = true }.Apply(model);
        Assert.All(heads, p => Assert.Matches($@"^{prefix.Replace(".", @"\.")}(camera|depth|point)_head\.", p.Key));
        Assert.Contains(heads, p => p.Key.StartsWith(prefix + "point_head."));
        Assert.False(model.spatial_encoder.vggt_model.aggregator.RecordsGraph);

        var all = new TrainableSet(TuneSpatialEncoder: true).Apply(model);
        Assert.Equal(model.spatial_encoder.vggt_model.parameters().Count(), all.Count(p => p.Key.StartsWith(prefix)));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new TrainableSet { SpatialEncoderLastBlocks = depth + 1 }.Apply(model));
        Assert.Contains($"has {depth} block pairs", e.Message);
    }

    [Fact]
    public void Cached_spatial_tokens_are_recomputed_when_vggt_trains_or_changed()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU, ScalarType.Float32);
        new TrainableSet().Apply(model);
        using var plain = TinyFixture.FirstTrainingExample();
        using var cached = TinyFixture.FirstTrainingExample() with { SpatialTokens = model.SpatialTokens(plain.VideoTchw), SpatialTokensWeights = model.SpatialEncoderWeights() };
        Assert.Equal(SftObjective.Loss(model, plain).item<float>(), SftObjective.Loss(model, cached).item<float>());

        using (torch.no_grad()) model.spatial_encoder!.vggt_model.aggregator.global_blocks[^1].mlp.fc2.weight!.mul_(3);
        float fresh = SftObjective.Loss(model, plain).item<float>();
        Assert.Equal(fresh, SftObjective.Loss(model, cached).item<float>());   // the stale tokens are not used

        new TrainableSet(TuneSpatialEncoder: true).Apply(model);
        using var current = TinyFixture.FirstTrainingExample() with { SpatialTokens = model.SpatialTokens(plain.VideoTchw), SpatialTokensWeights = model.SpatialEncoderWeights() };
        var loss = SftObjective.Loss(model, current);
        loss.backward();
        Assert.NotNull(model.spatial_encoder.vggt_model.aggregator.global_blocks[0].attn.qkv.weight!.grad);   // computed with a graph
    }

    /// <summary>One camera at the origin looking at a fronto-parallel wall at depth 2 (12×12 pixels, all valid), a
    /// constant depth prediction of 1 with confidence 2, point predictions equal to the normalised truth with confidence
    /// 3, and all-zero pose encodings: every term has a closed form.</summary>
    [Fact]
    public void The_losses_equal_their_closed_form_on_a_flat_wall()
    {
        const int n = 12;
        const double f = 12, c = 6, wall = 2;
        var world = new double[n * n * 3];
        double distanceSum = 0;
        for (int v = 0; v < n; v++)
            for (int u = 0; u < n; u++)
            {
                double x = (u - c) / f * wall, y = (v - c) / f * wall;
                world[(v * n + u) * 3] = x; world[(v * n + u) * 3 + 1] = y; world[(v * n + u) * 3 + 2] = wall;
                distanceSum += Math.Sqrt(x * x + y * y + wall * wall);
            }
        double scale = distanceSum / (n * n + 1e-3);
        using var scope = torch.NewDisposeScope();
        using var truth = new VggtGroundTruth(torch.eye(3, 4).view(1, 1, 3, 4), torch.tensor(new double[] { f, 0, c, 0, f, c, 0, 0, 1 }, [1, 1, 3, 3]).to(ScalarType.Float32),
            torch.full([1, 1, n, n], wall), torch.tensor(world, [1, 1, n, n, 3]).to(ScalarType.Float32), torch.ones([1, 1, n, n], ScalarType.Bool));
        var poses = Enumerable.Range(0, 4).Select(_ => torch.zeros([1, 1, 9], requires_grad: true)).ToArray();
        using var terms = VggtLoss.Compute(poses, torch.ones([1, 1, n, n, 1]), torch.full([1, 1, n, n], 2.0), torch.tensor(world, [1, 1, n, n, 3]).div(scale).to(ScalarType.Float32),
            torch.full([1, 1, n, n], 3.0), truth);
        foreach (var (name, value) in terms.Named) output.WriteLine($"{name} {value.item<float>():G8}");

        double fov = 2 * Math.Atan(n / 2.0 / f);
        double stages = (1 + 0.6 + 0.36 + 0.216) / 4;                      // gamma^(3-i), averaged over the 4 steps
        double depthError = Math.Abs(wall / scale - 1);
        double camera = stages * (0 + 0.25 + 0.5 * fov);                   // |T| 0, quaternion (0,0,0,1): 1/4, both FoVs
        double confDepth = depthError * 2 - 0.2 * Math.Log(2), confPoint = -0.2 * Math.Log(3);
        Assert.Equal(stages * 0.25, terms.Rotation.item<float>(), 5);
        Assert.Equal(stages * fov, terms.Focal.item<float>(), 5);
        Assert.Equal(camera, terms.Camera.item<float>(), 5);
        Assert.Equal(depthError, terms.RegDepth.item<float>(), 5);
        Assert.Equal(confDepth, terms.ConfDepth.item<float>(), 5);
        Assert.Equal(0, terms.GradDepth.item<float>(), 5);                 // a constant error has no gradient
        Assert.Equal(0, terms.RegPoint.item<float>(), 5);
        Assert.Equal(0, terms.GradPoint.item<float>(), 5);                 // the same normals everywhere
        Assert.Equal(confPoint, terms.ConfPoint.item<float>(), 5);
        Assert.Equal(5 * camera + confDepth + depthError + confPoint, terms.Objective.item<float>(), 4);
    }

    [Fact]
    public void A_few_steps_on_one_synthetic_scene_reduce_vggt_geometry_loss()
    {
        using var model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU, ScalarType.Float32);
        var trainable = new TrainableSet(TuneLanguage: false, TuneConnector: false, TuneSpatialEncoder: true).Apply(model);
        using var optimizer = new AdamW(trainable, new AdamWOptions(WeightDecay: 0));
        var scene = SyntheticScene.Create(seed: 3, new SyntheticSceneOptions(Frames: 8, Width: 112, Height: 84));
        var (images, truth) = VggtGroundTruth.FromScene(scene, [0, 3, 6]);
        using var _ = images;
        using var __ = truth;
        Assert.Equal([1, 3, 84, 112], truth.Depths.shape);
        var vggt = model.spatial_encoder!.vggt_model;
        var losses = new List<double>();
        for (int step = 0; step < 6; step++)
        {
            using var scope = torch.NewDisposeScope();
            foreach (var p in trainable) p.Parameter.grad = null;
            using var predictions = vggt.forward(images);
            using var terms = VggtLoss.Compute(predictions, truth);
            terms.Objective.backward();
            optimizer.Update(_ => 2e-3);
            losses.Add(terms.Objective.item<float>());
            output.WriteLine($"step {step}: objective {losses[^1]:F4}, depth reg {terms.RegDepth.item<float>():F4}, point reg {terms.RegPoint.item<float>():F4}");
        }
        Assert.True(losses[^1] < 0.9 * losses[0], $"VGGT's loss went {losses[0]} → {losses[^1]}");
    }

    [Fact]
    public void Train_with_tune_mm_spatial_encoder_changes_vggt_and_leaves_the_frozen_weights_bit_identical()
    {
        string data = SftTrainerTests.Data(), dir = TestPaths.NewTempDir("train-vggt");
        var (code, stdout, stderr) = CliInvocation.Invoke("train", "--model_name_or_path", Path.Combine(data, "model"),
            "--dataset_use", Path.Combine(data, "train.jsonl"), "--output_dir", Path.Combine(dir, "out"), "--device", "cpu",
            "--max_steps", "2", "--gradient_accumulation_steps", "1", "--learning_rate", "1e-3", "--save_steps", "0",
            "--video_min_frames", "4", "--video_max_frames", "4", "--video_min_frame_pixels", "9408", "--video_max_frame_pixels", "9408",
            "--tune_mm_spatial_encoder", "true", "--gradient_checkpointing");
        Assert.True(code == 0, stdout + stderr);
        using var before = Checkpoint.Open(Path.Combine(data, "model"));
        using var after = Checkpoint.Open(Path.Combine(dir, "out"));
        bool Same(string key)
        {
            using var scope = torch.NewDisposeScope();
            return before.Read(key).eq(after.Read(key)).all().item<bool>();
        }
        var vggtKeys = before.Keys.Where(k => k.StartsWith(VggtModel.CheckpointPrefix, StringComparison.Ordinal)).ToList();
        var aggregator = vggtKeys.Where(k => k.Contains(".aggregator.frame_blocks.") || k.Contains(".aggregator.global_blocks.")).ToList();
        Assert.NotEmpty(aggregator);
        Assert.All(aggregator.Where(k => k.EndsWith(".weight")), k => Assert.False(Same(k), $"{k} did not train"));
        // Frozen: the vision blocks; without a gradient from the SFT loss: VGGT's heads (AdamW skips them, decay included).
        Assert.All(before.Keys.Where(k => k.StartsWith("visual.blocks.", StringComparison.Ordinal)), k => Assert.True(Same(k), k));
        Assert.All(vggtKeys.Where(k => k.Contains("_head.")), k => Assert.True(Same(k), k));
    }
}
