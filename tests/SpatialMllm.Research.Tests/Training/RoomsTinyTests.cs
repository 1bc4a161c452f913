using System.Globalization;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Training;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>The committed default model (checkpoints/rooms-tiny), its reproduction and its measurement.</summary>
public class RoomsTinyTests(ITestOutputHelper output)
{
    static string Folder => Path.Combine(TestPaths.RepoRoot, "checkpoints", "rooms-tiny");

    /// <summary>Rooms neither trained on nor in the recipe's measured held-out seeds nor the demo's.</summary>
    static readonly int[] TestSeeds = [950_000, 950_001, 950_002, 950_003, 950_004, 950_005];

    [Fact]
    public void Test_seeds_are_held_out()
    {
        var recipe = RoomsTinyRecipe.Default;
        Assert.Empty(TestSeeds.Intersect(recipe.TrainSeeds));
        Assert.Empty(TestSeeds.Intersect(recipe.HeldOutSeeds));
        Assert.Empty(recipe.HeldOutSeeds.Intersect(recipe.TrainSeeds));
        Assert.DoesNotContain(recipe.DemoSeed, recipe.TrainSeeds.Concat(recipe.HeldOutSeeds).Concat(TestSeeds));
    }

    [Fact]
    public void The_committed_weights_load_and_score_above_the_mean_answer_baseline_on_held_out_rooms()
    {
        var recipe = RoomsTinyRecipe.Default;
        using var model = SpatialMllmModel.Load(Folder, torch.CPU, torch.ScalarType.Float32);
        Assert.Empty(model.LoadReport!.Missing);
        Assert.Empty(model.LoadReport!.Unexpected);
        var report = SyntheticSceneEvaluation.Evaluate(model, recipe, TestSeeds, RoomsTinyRecipe.ReadMeanAnswers(Folder),
            TestPaths.NewTempDir("rooms-tiny-heldout"), resamples: 200);
        output.WriteLine(report.FormatTable());
        Assert.True(report.Overall.Value > report.BaselineOverall.Value,
            $"rooms-tiny scores {report.Overall.Value:F1} overall on held-out rooms, the mean-answer baseline {report.BaselineOverall.Value:F1}");
    }

    /// <summary>
    /// <c>--tie-embeddings false</c> gives the model its own <c>lm_head</c> from the first weights on (tied, the object
    /// names' embeddings drift together in SFT: <see cref="RoomsTinyRecipe.TieWordEmbeddings"/>); the default stays tied,
    /// as the committed weights are.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_initial_model_ties_its_head_as_the_recipe_says(bool tied)
    {
        var recipe = RoomsTinyRecipe.Default with { TieWordEmbeddings = tied };
        string initial = TestPaths.NewTempDir("rooms-tiny-tie");
        TinyCheckpoint.Create(initial, recipe.InitSeed, configure: recipe.ConfigureSizes);
        using var model = SpatialMllmModel.Load(initial, torch.CPU, torch.ScalarType.Float32);
        Assert.Empty(model.LoadReport!.Missing);
        Assert.Equal(tied, model.Language.WordEmbeddingsTied);
        if (!tied) Assert.False(model.lm_head.weight.allclose(model.model.embed_tokens.weight), "the untied head starts as a copy of the embeddings");
        Assert.True(RoomsTinyRecipe.Default.TieWordEmbeddings);
    }

    [Fact]
    public void The_first_geometry_steps_reproduce_the_committed_log()
    {
        var recipe = RoomsTinyRecipe.Default;
        string initial = TestPaths.NewTempDir("rooms-tiny-initial");
        TinyCheckpoint.Create(initial, recipe.InitSeed);
        using var model = SpatialMllmModel.Load(initial, torch.CPU, torch.ScalarType.Float32);
        const int steps = 3;
        var reproduced = RoomsTinyRecipe.OnOneThread(() => VggtGeometryTrainer.Train(model, recipe.Geometry, log: output.WriteLine, stopAfter: steps));

        var rows = File.ReadLines(Path.Combine(Folder, RoomsTinyRecipe.GeometryLogFile)).ToList();
        var columns = rows[0].Split(',');
        foreach (var step in reproduced)
        {
            var cells = rows[step.Step].Split(',');
            double Logged(string column) => double.Parse(cells[Array.IndexOf(columns, column)], CultureInfo.InvariantCulture);
            Assert.Equal(step.Step, (int)Logged("step"));
            Assert.Equal(step.SceneSeed, (int)Logged("scene_seed"));
            foreach (string term in new[] { "objective", "loss_camera", "loss_reg_depth", "loss_reg_point", "loss_conf_point" })
                Assert.True(Math.Abs(step.Losses[term] - Logged(term)) <= 1e-4, $"step {step.Step} {term}: {step.Losses[term]:R} reproduced, {Logged(term):R} logged");
            Assert.True(Math.Abs(step.GradNorm - Logged("grad_norm")) <= 1e-4 * Math.Max(1, Logged("grad_norm")),
                $"step {step.Step} grad_norm: {step.GradNorm:R} reproduced, {Logged("grad_norm"):R} logged");
        }
    }

    /// <summary>The reproduction's whole path up to SFT (training scenes, tokenizer, initial weights, all of stage 1)
    /// and SFT's first steps, against the committed log.</summary>
    [Fact]
    public void The_first_sft_steps_of_the_reproduction_match_the_committed_log()
    {
        const int steps = 3;
        var reproduced = RoomsTinyRecipe.Default.FirstSftSteps(TestPaths.NewTempDir("rooms-tiny-sft"), steps, output.WriteLine);
        Assert.Equal(steps, reproduced.Count);

        var rows = File.ReadLines(Path.Combine(Folder, RoomsTinyRecipe.SftLogFile)).ToList();
        var columns = rows[0].Split(',');
        foreach (var step in reproduced)
        {
            var cells = rows[step.Step].Split(',');
            double Logged(string column) => double.Parse(cells[Array.IndexOf(columns, column)], CultureInfo.InvariantCulture);
            Assert.Equal(step.Step, (int)Logged("step"));
            // Stage 1's 100 steps come first: a relative 1e-3 leaves room for their rounding on another CPU, not for a change.
            Assert.True(Math.Abs(step.Loss!.Value - Logged("loss")) <= 1e-3 * Logged("loss"), $"step {step.Step} loss: {step.Loss:R} reproduced, {Logged("loss"):R} logged");
            Assert.True(Math.Abs(step.GradNorm!.Value - Logged("grad_norm")) <= 1e-3 * Logged("grad_norm"),
                $"step {step.Step} grad_norm: {step.GradNorm:R} reproduced, {Logged("grad_norm"):R} logged");
            Assert.Equal(Logged("learning_rate"), step.LearningRate, 9);
        }
    }

    [Fact]
    public void Geometry_training_lowers_vggts_losses_on_the_scene_it_sees()
    {
        string initial = TestPaths.NewTempDir("rooms-tiny-geometry");
        TinyCheckpoint.Create(initial, seed: 7);
        using var model = SpatialMllmModel.Load(initial, torch.CPU, torch.ScalarType.Float32);
        var options = new VggtGeometryOptions([3], new SyntheticSceneOptions(Frames: 4, Width: 112, Height: 84), FramesPerSequence: 2, Steps: 40)
        {
            LearningRate = 3e-3, WarmupRatio = 0,
        };
        var steps = VggtGeometryTrainer.Train(model, options, log: output.WriteLine);
        double First(string term) => steps.Take(5).Average(s => s.Losses[term]);
        double Last(string term) => steps.TakeLast(5).Average(s => s.Losses[term]);
        output.WriteLine($"objective {First("objective"):F3} → {Last("objective"):F3}, depth {First("loss_reg_depth"):F3} → {Last("loss_reg_depth"):F3}");
        Assert.True(Last("objective") < 0.8 * First("objective"), $"objective {First("objective"):F3} → {Last("objective"):F3}");
        Assert.True(Last("loss_reg_depth") < First("loss_reg_depth"), $"depth {First("loss_reg_depth"):F3} → {Last("loss_reg_depth"):F3}");
        // Only VGGT trained: the decoder is as it was drawn.
        Assert.All(model.model.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void Held_out_scores_are_the_scorers_with_intervals_over_scenes()
    {
        VsiBenchQuestion Numeric(int id, string scene, string truth) =>
            new(id, SyntheticScene.DatasetName, scene, VsiBenchQuestionTypes.ObjectCounting, "How many chairs?", null, truth, false);
        VsiBenchQuestion Choice(int id, string scene, string truth) =>
            new(id, SyntheticScene.DatasetName, scene, VsiBenchQuestionTypes.ObjectRelDirectionEasy, "Left or right?", ["A. left", "B. right"], truth, false);
        var answers = new List<HeldOutAnswer>
        {
            new(Numeric(0, "s0", "2"), "2", VsiBench.ScoreAnswer(Numeric(0, "s0", "2"), "2").Score, "3", VsiBench.ScoreAnswer(Numeric(0, "s0", "2"), "3").Score),
            new(Numeric(1, "s1", "4"), "4", 1, "3", VsiBench.ScoreAnswer(Numeric(1, "s1", "4"), "3").Score),
            new(Choice(2, "s0", "A"), "A", 1, "A", 1),
            new(Choice(3, "s1", "B"), "A", 0, "A", 0),
        };
        var report = SyntheticSceneEvaluation.Score([0, 1], answers, resamples: 200);
        var counting = report.Types.Single(t => t.Type == VsiBenchQuestionTypes.ObjectCounting);
        var easy = report.Types.Single(t => t.Type == VsiBenchQuestionTypes.ObjectRelDirectionEasy);
        Assert.Equal(100, counting.Model.Value, 6);
        Assert.Equal(100 * answers.Take(2).Average(a => a.BaselineScore), counting.MeanAnswer.Value, 6);
        Assert.Equal(50, easy.Model.Value, 6);
        Assert.Equal(50.0, easy.Chance!.Value, 6);
        Assert.False(easy.BeatsBar); // 50 % is chance, not above it
        Assert.True(counting.BeatsBar);
        // Two scenes: a resample holds s0 twice, s1 twice, or one of each, so the easy accuracy ranges over 0–100.
        Assert.Equal(0, easy.Model.Low, 6);
        Assert.Equal(100, easy.Model.High, 6);
        Assert.Equal((100 + 50) / 2.0, report.Overall.Value, 6);
    }
}
