using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Scenes;

namespace SpatialMllm.Research.Tests.Scenes;

/// <summary>The synthetic scene's questions are VSI-Bench rows whose answers the ground truth confirms, computed another way.</summary>
public class SceneQuestionTests
{
    static readonly SyntheticSceneOptions Small = SyntheticSceneTests.Small with { Frames = 48 };
    static readonly int[] Seeds = [7, 11, 23];

    static SceneObject Named(SyntheticScene scene, string category) => scene.Objects.Single(o => o.Category == category);

    static double Number(string text) => double.Parse(text, CultureInfo.InvariantCulture);

    static string Answer(VsiBenchQuestion q) => q.Options![q.GroundTruth[0] - 'A'][3..];

    [Fact]
    public void The_questions_cover_every_generated_type_and_the_same_seed_asks_the_same()
    {
        var all = Seeds.SelectMany(seed => SyntheticScene.Create(seed, Small).Questions()).ToList();
        var expected = VsiBenchQuestionTypes.All.Where(t => t != VsiBenchQuestionTypes.RoutePlanning);
        Assert.Equal(expected.Order(), all.Select(q => q.QuestionType).Distinct().Order());

        var again = SyntheticScene.Create(7, Small).Questions();
        Assert.Equal(SyntheticScene.Create(7, Small).Questions().Select(SyntheticBenchmark.ToJsonLine), again.Select(SyntheticBenchmark.ToJsonLine));
        Assert.All(again, q => Assert.Equal(("synthetic", "seed0007", false), (q.Dataset, q.SceneName, q.Pruned!.Value)));
        Assert.Equal(again.Count, again.Select(q => q.Id).Distinct().Count());
    }

    [Theory]
    [MemberData(nameof(SeedData))]
    public void Counts_sizes_and_room_size_match_the_object_list(int seed)
    {
        var scene = SyntheticScene.Create(seed, Small);
        foreach (var q in scene.Questions(perType: 20))
        {
            switch (q.QuestionType)
            {
                case VsiBenchQuestionTypes.ObjectCounting:
                    string category = Regex.Match(q.Question, @"How many (.+)\(s\) are in this room\?").Groups[1].Value;
                    Assert.Equal(scene.Objects.Count(o => o.Category == category), int.Parse(q.GroundTruth, CultureInfo.InvariantCulture));
                    Assert.True(int.Parse(q.GroundTruth, CultureInfo.InvariantCulture) >= 2, "VSI-Bench counts categories with two or more instances");
                    break;
                case VsiBenchQuestionTypes.ObjectSizeEstimation:
                    var o = Named(scene, Regex.Match(q.Question, @"\) of the (.+), measured").Groups[1].Value);
                    Assert.Equal(new[] { o.Length, o.Width, o.Height }.Max() * 100, Number(q.GroundTruth), 0.5 + 1e-9);
                    break;
                case VsiBenchQuestionTypes.RoomSizeEstimation:
                    Assert.Equal(scene.Room.Width * scene.Room.Depth, Number(q.GroundTruth), 0.05 + 1e-9);
                    break;
            }
        }
    }

    public static TheoryData<int> SeedData() => new(Seeds);

    [Theory]
    [MemberData(nameof(SeedData))]
    public void Distances_agree_with_the_closest_pair_of_sampled_surface_points(int seed)
    {
        var scene = SyntheticScene.Create(seed, Small);
        var questions = scene.Questions(perType: 20);
        foreach (var q in questions.Where(q => q.QuestionType == VsiBenchQuestionTypes.ObjectAbsDistance))
        {
            var m = Regex.Match(q.Question, @"between the (.+) and the (.+) \(in meters\)");
            double sampled = SampledDistance(Named(scene, m.Groups[1].Value), Named(scene, m.Groups[2].Value));
            Assert.True(Math.Abs(sampled - Number(q.GroundTruth)) <= 0.05 + 0.02, $"{q.Question}: {q.GroundTruth}, sampled {sampled:0.000}");
        }
        foreach (var q in questions.Where(q => q.QuestionType == VsiBenchQuestionTypes.ObjectRelDistance))
        {
            var target = Named(scene, Regex.Match(q.Question, @"is the closest to the (.+)\?").Groups[1].Value);
            var distances = q.Options!.Select(option => SampledDistance(Named(scene, option[3..]), target)).ToList();
            Assert.Equal(q.GroundTruth[0] - 'A', distances.IndexOf(distances.Min()));
        }
    }

    /// <summary>
    /// The smallest distance from points sampled every 2 cm over <paramref name="a"/>'s surface to the solid
    /// <paramref name="b"/> (clamped in b's own frame), an estimate at most ~1.5 cm above the true closest distance.
    /// </summary>
    static double SampledDistance(SceneObject a, SceneObject b) => SurfacePoints(a).Min(p =>
    {
        double c = Math.Cos(b.Yaw), s = Math.Sin(b.Yaw), dx = p.X - b.X, dy = p.Y - b.Y;
        double lx = c * dx + s * dy, ly = -s * dx + c * dy;
        double vertical = Math.Max(0, Math.Max(b.Bottom - p.Z, p.Z - b.Top));
        double horizontal = b.Shape == ObjectShape.Cylinder
            ? Math.Max(0, Math.Sqrt(lx * lx + ly * ly) - b.Length / 2)
            : Math.Sqrt(Math.Pow(Math.Max(0, Math.Abs(lx) - b.Length / 2), 2) + Math.Pow(Math.Max(0, Math.Abs(ly) - b.Width / 2), 2));
        return Math.Sqrt(horizontal * horizontal + vertical * vertical);
    });

    static List<(double X, double Y, double Z)> SurfacePoints(SceneObject o)
    {
        const double step = 0.02;
        var points = new List<(double X, double Y, double Z)>();
        void Add(double lx, double ly, double z)
        {
            double c = Math.Cos(o.Yaw), s = Math.Sin(o.Yaw);
            points.Add((o.X + c * lx - s * ly, o.Y + s * lx + c * ly, z));
        }
        IEnumerable<double> Steps(double from, double to) =>
            Enumerable.Range(0, (int)Math.Ceiling((to - from) / step) + 1).Select(i => Math.Min(to, from + i * step));
        double hx = o.Length / 2, hy = o.Width / 2;
        foreach (double z in Steps(o.Bottom, o.Top))
        {
            if (o.Shape == ObjectShape.Cylinder)
                foreach (double angle in Steps(0, 2 * Math.PI)) Add(hx * Math.Cos(angle), hx * Math.Sin(angle), z);
            else
            {
                foreach (double x in Steps(-hx, hx)) { Add(x, -hy, z); Add(x, hy, z); }
                foreach (double y in Steps(-hy, hy)) { Add(-hx, y, z); Add(hx, y, z); }
            }
        }
        foreach (double z in new[] { o.Bottom, o.Top })   // top and bottom faces
            foreach (double x in Steps(-hx, hx))
                foreach (double y in Steps(-hy, hy))
                    if (o.Shape == ObjectShape.Box || x * x + y * y <= hx * hx) Add(x, y, z);
        return points;
    }

    [Theory]
    [MemberData(nameof(SeedData))]
    public void Directions_agree_with_the_target_in_the_standing_frame(int seed)
    {
        var scene = SyntheticScene.Create(seed, Small);
        var directionQuestions = scene.Questions(perType: 20).Where(q => VsiBenchQuestionTypes.IsRelDirection(q.QuestionType)).ToList();
        Assert.NotEmpty(directionQuestions);
        foreach (var q in directionQuestions)
        {
            var m = Regex.Match(q.Question, @"standing by the (.+) and facing the (.+), is the (.+?) to ");
            var (at, facing, target) = (Named(scene, m.Groups[1].Value), Named(scene, m.Groups[2].Value), Named(scene, m.Groups[3].Value));
            // A frame with y forward (towards what I face) and x to my right; seen from above, z up.
            double heading = Math.Atan2(facing.Y - at.Y, facing.X - at.X);
            double dx = target.X - at.X, dy = target.Y - at.Y;
            double forward = dx * Math.Cos(heading) + dy * Math.Sin(heading);
            double right = dx * Math.Sin(heading) - dy * Math.Cos(heading);
            double turn = Math.Abs(Math.Atan2(right, forward)) * 180 / Math.PI;
            string expected = q.QuestionType switch
            {
                VsiBenchQuestionTypes.ObjectRelDirectionEasy => right > 0 ? "right" : "left",
                VsiBenchQuestionTypes.ObjectRelDirectionMedium => turn >= 135 ? "back" : right > 0 ? "right" : "left",
                _ => (forward > 0 ? "front-" : "back-") + (right > 0 ? "right" : "left"),
            };
            Assert.True(expected == Answer(q), $"{q.Question} → {Answer(q)}, expected {expected} (forward {forward:0.00}, right {right:0.00})");
        }
    }

    [Theory]
    [MemberData(nameof(SeedData))]
    public void Appearance_order_follows_the_first_frames_the_rendered_ids_show(int seed)
    {
        var scene = SyntheticScene.Create(seed, Small);
        int[] surface;
        using (var frames = scene.RenderAll()) surface = frames.SurfaceIds.data<int>().ToArray();
        int pixels = Small.Width * Small.Height;
        int threshold = (int)Math.Ceiling(SceneQuestions.VisibleFraction * pixels);
        int FirstFrame(string category)
        {
            var ids = scene.Objects.Where(o => o.Category == category).Select(o => o.Id).ToHashSet();
            for (int t = 0; t < scene.FrameCount; t++)
                if (ids.Any(id => surface.Skip(t * pixels).Take(pixels).Count(s => s == id) >= threshold)) return t;
            return int.MaxValue;
        }
        foreach (var q in scene.Questions(perType: 20).Where(q => q.QuestionType == VsiBenchQuestionTypes.AppearanceOrder))
        {
            var order = Answer(q).Split(", ");
            var firsts = order.Select(FirstFrame).ToList();
            Assert.True(firsts.SequenceEqual(firsts.Order()) && firsts[^1] < int.MaxValue, $"{q.Question} → {Answer(q)}: first frames {string.Join(", ", firsts)}");
            Assert.Equal(4, q.Options!.Distinct().Count());
        }
    }

    [Fact]
    public void The_written_benchmark_loads_scores_and_finds_its_videos_like_VSI_Bench()
    {
        string folder = TestPaths.NewTempDir("synthetic-bench");
        var written = SyntheticBenchmark.Write(folder, [7, 8], Small with { Frames = 16 }, perType: 2);

        var dataset = VsiBench.Load(Path.Combine(folder, SyntheticBenchmark.QuestionsFileName));
        Assert.Equal(written.Select(SyntheticBenchmark.ToJsonLine), dataset.Questions.Select(SyntheticBenchmark.ToJsonLine));
        Assert.Equal(2, dataset.Questions.Select(q => q.SceneName).Distinct().Count());
        Assert.Equal(dataset.Count, VsiBench.Load(dataset.SourcePath, VsiBenchSubset.Debiased).Count);
        var items = VsiBenchVideos.Items(dataset, folder);
        Assert.True(File.Exists(Path.Combine(folder, "synthetic", "seed0007.mp4")));
        Assert.Equal(dataset.Count, items.Count);

        // Answering with the ground truth scores 1 on every type.
        var perfect = dataset.Questions.Select(q => new Prediction(q.Id.ToString(CultureInfo.InvariantCulture), q.GroundTruth)).ToList();
        var scores = VsiBench.Score(perfect, dataset, VsiBenchScoringProfile.SpatialMllm);
        Assert.All(scores.PerQuestionType.Values, s => Assert.Equal(1.0, s.Score, 6));

        // The fine-tuning samples: one per question, the evaluation prompt after <video>, the ground truth as the answer.
        var lines = File.ReadAllLines(Path.Combine(folder, SyntheticBenchmark.ConversationsFileName));
        Assert.Equal(dataset.Count, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        var turns = first.RootElement.GetProperty("conversations");
        var q0 = dataset[first.RootElement.GetProperty("id").GetInt32()];
        Assert.Equal($"synthetic/{q0.SceneName}.mp4", first.RootElement.GetProperty("video").GetString());
        Assert.Equal("<video>\n" + VsiBenchPrompts.Build(q0), turns[0].GetProperty("value").GetString());
        Assert.Equal(("human", "gpt"), (turns[0].GetProperty("from").GetString(), turns[1].GetProperty("from").GetString()));
        Assert.Equal(q0.GroundTruth, turns[1].GetProperty("value").GetString());
    }
}
