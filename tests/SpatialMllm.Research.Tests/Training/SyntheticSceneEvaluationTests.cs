using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Training;
using SpatialMllm.Research.Video;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Training;

/// <summary>Held-out evaluation's sampler choice and the paired comparison of two settings (<see cref="SyntheticSceneEvaluation"/>).</summary>
public class SyntheticSceneEvaluationTests(ITestOutputHelper output)
{
    /// <summary>Rooms neither trained on nor measured (the recipe's held-out seeds) nor the demo's.</summary>
    static readonly int[] TestSeeds = [950_010, 950_011];

    static string Folder => Path.Combine(TestPaths.RepoRoot, "checkpoints", "rooms-tiny");

    static VsiBenchQuestion Counting(int id, string scene) =>
        new(id, SyntheticScene.DatasetName, scene, VsiBenchQuestionTypes.ObjectCounting, "How many chairs?", null, "2", false);

    static VsiBenchQuestion Easy(int id, string scene) =>
        new(id, SyntheticScene.DatasetName, scene, VsiBenchQuestionTypes.ObjectRelDirectionEasy, "Left or right?", ["A. left", "B. right"], "A", false);

    static HeldOutReport Report(params (VsiBenchQuestion Question, double Score)[] answers) =>
        SyntheticSceneEvaluation.Score([0, 1], [.. answers.Select(a => new HeldOutAnswer(a.Question, "", a.Score, "", 0))], resamples: 200);

    [Fact]
    public void A_comparison_is_the_paired_difference_with_intervals_over_scenes()
    {
        // Counting: a scores 1 in both scenes, b 0.5 in both: +50 in every resample. Easy: a right in s0 only, b never:
        // +100 or 0 per scene, so +50 with a resampled range of 0–100.
        var a = Report((Counting(0, "s0"), 1), (Counting(1, "s1"), 1), (Easy(2, "s0"), 1), (Easy(3, "s1"), 0));
        var b = Report((Counting(0, "s0"), 0.5), (Counting(1, "s1"), 0.5), (Easy(2, "s0"), 0), (Easy(3, "s1"), 0));
        var comparison = SyntheticSceneEvaluation.Compare(a, b, resamples: 200);
        var counting = comparison.Types.Single(t => t.Type == VsiBenchQuestionTypes.ObjectCounting).Difference;
        var easy = comparison.Types.Single(t => t.Type == VsiBenchQuestionTypes.ObjectRelDirectionEasy).Difference;
        Assert.Equal(new ScoreInterval(50, 50, 50), counting);
        Assert.Equal(50, easy.Value, 9);
        Assert.Equal(0, easy.Low, 9);
        Assert.Equal(100, easy.High, 9);
        Assert.Equal(a.Overall.Value - b.Overall.Value, comparison.Overall.Value, 9);

        var other = Report((Counting(0, "s0"), 1), (Counting(1, "s2"), 1));
        var error = Assert.Throws<ArgumentException>(() => SyntheticSceneEvaluation.Compare(a, other));
        Assert.Contains("different scenes", error.Message);
    }

    [Fact]
    public void The_sampler_is_chosen_by_name_and_space_aware_sampling_sees_frames_at_vggts_training_size()
    {
        var recipe = RoomsTinyRecipe.Default;
        Assert.Equal(recipe.Sampler.Settings, SyntheticSceneEvaluation.Sampler("uniform", recipe, Folder).Settings);
        var unknown = Assert.Throws<ArgumentException>(() => SyntheticSceneEvaluation.Sampler("keyframes", recipe, Folder));
        Assert.Contains("uniform or space-aware, not 'keyframes'", unknown.Message);

        using var spaceAware = (SpaceAwareSampler)SyntheticSceneEvaluation.Sampler("space-aware", recipe, Folder);
        Assert.Contains($"k={recipe.Frames},candidates={recipe.Scene.Frames}", spaceAware.Settings);
        Assert.EndsWith(",width=112)", spaceAware.Settings);
        var selection = spaceAware.Select(SyntheticScene.Create(TestSeeds[0], recipe.Scene).AsVideoSource());
        Assert.Equal(Enumerable.Range(0, recipe.Scene.Frames), selection.Candidates);
        Assert.InRange(selection.Indices.Count, 1, recipe.Frames);
        Assert.Equal(selection.Indices.Order(), selection.Indices);
        // Greedy coverage: each pick adds voxels.
        Assert.True(selection.SpaceAware!.CoverageCurve.Zip(selection.SpaceAware.CoverageCurve.Skip(1)).All(p => p.Second > p.First));
    }

    [Fact]
    public void Evaluation_answers_from_the_frames_the_sampler_chooses_and_records_them()
    {
        var recipe = RoomsTinyRecipe.Default;
        using var model = SpatialMllmModel.Load(Folder, torch.CPU, torch.ScalarType.Float32);
        using var sampler = (SpaceAwareSampler)SyntheticSceneEvaluation.Sampler("space-aware", recipe, Folder);
        string videos = TestPaths.NewTempDir("rooms-tiny-sampler");
        var report = SyntheticSceneEvaluation.Evaluate(model, recipe, TestSeeds, RoomsTinyRecipe.ReadMeanAnswers(Folder), videos,
            output.WriteLine, resamples: 200, sampler: sampler);
        output.WriteLine(report.FormatTable());
        Assert.Equal(sampler.Settings, report.Sampler);
        Assert.Equal(TestSeeds.Select(seed => sampler.Select(VideoSource.Open(
            Path.Combine(videos, SyntheticBenchmark.VideoPath(SyntheticScene.Create(seed, recipe.Scene))))).Indices), report.Frames);
        Assert.Contains($"frames: {sampler.Settings}", report.FormatTable());
    }

    [Fact]
    public void Evaluation_reads_scenes_written_as_frame_folders()
    {
        var recipe = RoomsTinyRecipe.Default with { VideoFormat = SceneVideoFormat.Frames };
        using var model = SpatialMllmModel.Load(Folder, torch.CPU, torch.ScalarType.Float32);
        string videos = TestPaths.NewTempDir("rooms-tiny-frames");
        var report = SyntheticSceneEvaluation.Evaluate(model, recipe, TestSeeds, RoomsTinyRecipe.ReadMeanAnswers(Folder), videos,
            output.WriteLine, resamples: 200);
        output.WriteLine(report.FormatTable());
        Assert.Empty(Directory.EnumerateFiles(videos, "*.mp4", SearchOption.AllDirectories));
        foreach (int seed in TestSeeds)
        {
            var scene = SyntheticScene.Create(seed, recipe.Scene);
            string folder = Path.Combine(videos, SyntheticBenchmark.VideoPath(scene, SceneVideoFormat.Frames));
            Assert.Equal(recipe.Scene.Frames, VideoSource.Open(folder).Info.FrameCount);
        }
        Assert.Equal(TestSeeds.Sum(seed => SyntheticScene.Create(seed, recipe.Scene).Questions(perType: recipe.PerType).Count), report.Answers.Count);
        Assert.Equal(TestSeeds.Select(_ => recipe.Sampler.Select(SyntheticScene.Create(TestSeeds[0], recipe.Scene).AsVideoSource()).Indices), report.Frames);
    }

    /// <summary>
    /// <c>--other-room</c>: each room's questions answered from the next room's video, the last from the first's. The
    /// pixels the model encodes for each room's questions are the next room's frames, and every question is answered once.
    /// </summary>
    [Fact]
    public void The_other_room_control_answers_each_rooms_questions_from_the_next_rooms_video()
    {
        var recipe = RoomsTinyRecipe.Default with { VideoFormat = SceneVideoFormat.Frames };
        using var model = SpatialMllmModel.Load(Folder, torch.CPU, torch.ScalarType.Float32);
        string videos = TestPaths.NewTempDir("other-room");
        var scenes = TestSeeds.Select(seed => SyntheticScene.Create(seed, recipe.Scene)).ToList();
        using (var capture = model.Hooks.Capture("pixel_values_videos"))
        {
            var report = SyntheticSceneEvaluation.Evaluate(model, recipe, TestSeeds, RoomsTinyRecipe.ReadMeanAnswers(Folder), videos,
                output.WriteLine, resamples: 200, otherRoom: true);
            Assert.Equal(scenes.Select(s => s.Questions(perType: recipe.PerType).Count), scenes.Select(s => report.Answers.Count(a => a.Question.SceneName == s.SceneName)));
            var encoded = capture.Calls("pixel_values_videos");
            Assert.Equal(scenes.Count, encoded.Count);
            for (int i = 0; i < scenes.Count; i++)
            {
                var shown = scenes[(i + 1) % scenes.Count];
                using var direct = model.Hooks.Capture("pixel_values_videos");
                using (model.EncodeVideo(Path.Combine(videos, SyntheticBenchmark.VideoPath(shown, SceneVideoFormat.Frames)), recipe.Sampler, recipe.AnswerOptions)) { }
                Assert.True(encoded[i].equal(direct["pixel_values_videos"]).all().item<bool>(), $"{scenes[i].SceneName}'s questions were not answered from {shown.SceneName}'s frames");
                Assert.False(encoded[i].equal(encoded[(i + 1) % scenes.Count]).all().item<bool>());
            }
        }
        Assert.Throws<ArgumentException>(() => SyntheticSceneEvaluation.Evaluate(model, recipe, [TestSeeds[0]], RoomsTinyRecipe.ReadMeanAnswers(Folder),
            videos, otherRoom: true));
    }
}
