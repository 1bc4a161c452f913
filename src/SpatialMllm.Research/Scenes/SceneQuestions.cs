using System.Globalization;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Scenes;

/// <summary>
/// VSI-Bench-style questions about a <see cref="SyntheticScene"/>, in VSI-Bench's own templates and answer formats,
/// with answers computed from the scene's ground truth:
/// <list type="bullet">
/// <item><c>object_counting</c>: instances of a category that has two or more, as in VSI-Bench (all of them seen by the walk);</item>
/// <item><c>object_abs_distance</c>: closest-point distance between two single-instance objects, metres, 1 decimal;</item>
/// <item><c>object_size_estimation</c>: longest dimension of a single-instance object, whole centimetres;</item>
/// <item><c>room_size_estimation</c>: floor area, m², 1 decimal;</item>
/// <item><c>object_rel_distance</c>: which of up to four objects is closest to a fifth (runner-up at least
/// <see cref="RelativeDistanceMargin"/> further);</item>
/// <item><c>object_rel_direction_easy/medium/hard</c>: standing by A facing B, where C is (footprint centres on the floor
/// plane; left is counter-clockwise seen from above; angles within <see cref="DirectionMarginDegrees"/> of a boundary skipped);</item>
/// <item><c>obj_appearance_order</c>: the order in which four categories first fill at least
/// <see cref="VisibleFraction"/> of a frame (first appearances at least <see cref="AppearanceGapFrames"/> apart).</item>
/// </list>
/// Only objects the walk shows (at least <see cref="VisibleFraction"/> of some frame) are asked about. Route planning
/// is not generated. The choices are drawn from a <see cref="Random"/> seeded by the scene's seed, so the questions are
/// as deterministic as the scene.
/// </summary>
public static class SceneQuestions
{
    public const double VisibleFraction = 0.002;
    public const double RelativeDistanceMargin = 0.15;
    public const double DirectionMarginDegrees = 12;
    public const int AppearanceGapFrames = 3;

    /// <summary>
    /// Up to <paramref name="perType"/> questions of each type (counting, distances, sizes, room size, relative distance,
    /// the three relative directions, appearance order), numbered from <paramref name="firstId"/>.
    /// </summary>
    public static IReadOnlyList<VsiBenchQuestion> Generate(SyntheticScene scene, int firstId = 0, int perType = 4)
    {
        if (perType < 1) throw new ArgumentOutOfRangeException(nameof(perType), "perType must be at least 1");
        // Not HashCode.Combine: its hashes are randomised per process, which gave each run other questions.
        var rng = new Random(unchecked(scene.Seed * 1_000_003 + 0x5eed));
        var firstSeen = FirstSeenFrames(scene);
        var seen = scene.Objects.Where(o => firstSeen[o.Id] >= 0).ToList();
        // Categories every instance of which the walk shows, and the objects that are the only one of their category.
        var fullySeen = scene.Objects.GroupBy(o => o.Category).Where(g => g.All(o => firstSeen[o.Id] >= 0)).ToList();
        var unique = fullySeen.Where(g => g.Count() == 1).Select(g => g.Single()).ToList();

        var drafts = new List<Draft>();
        drafts.AddRange(Take(rng, perType, fullySeen.Where(g => g.Count() >= 2).Select(g => Counting(g.Key, g.Count()))));
        drafts.AddRange(Take(rng, perType, Pairs(unique).Select(p => AbsoluteDistance(p.A, p.B)).OfType<Draft>()));
        drafts.AddRange(Take(rng, perType, unique.Select(Size)));
        drafts.Add(RoomSize(scene.Room));
        drafts.AddRange(Take(rng, perType, unique.Select(target => RelativeDistance(rng, target, unique)).OfType<Draft>()));
        var triples = Triples(unique).ToList();
        foreach (var kind in new[] { Direction.Easy, Direction.Medium, Direction.Hard })
            drafts.AddRange(Take(rng, perType, triples.Select(t => RelativeDirection(rng, kind, t.A, t.B, t.C)).OfType<Draft>()));
        drafts.AddRange(Take(rng, perType, AppearanceOrders(rng, scene, firstSeen)));

        return [.. drafts.Select((d, i) => new VsiBenchQuestion(firstId + i, SyntheticScene.DatasetName, scene.SceneName,
            d.Type, d.Question, d.Options, d.GroundTruth, Pruned: false))];
    }

    /// <summary>Per object, the first frame in which it covers at least <see cref="VisibleFraction"/> of the image; −1 if none.</summary>
    public static int[] FirstSeenFrames(SyntheticScene scene)
    {
        int[][] pixels = scene.ObjectPixelCounts;
        int threshold = (int)Math.Ceiling(VisibleFraction * scene.Options.Width * scene.Options.Height);
        return [.. scene.Objects.Select(o => Array.FindIndex(pixels, frame => frame[o.Id] >= threshold))];
    }

    sealed record Draft(string Type, string Question, IReadOnlyList<string>? Options, string GroundTruth);

    static Draft Counting(string category, int count) =>
        new(VsiBenchQuestionTypes.ObjectCounting, $"How many {category}(s) are in this room?", null, Integer(count));

    static Draft? AbsoluteDistance(SceneObject a, SceneObject b)
    {
        double distance = Math.Round(a.DistanceTo(b), 1, MidpointRounding.AwayFromZero);
        if (distance < 0.1) return null; // "0.0" would make MRA divide by zero, and touching objects are not a distance question
        return new(VsiBenchQuestionTypes.ObjectAbsDistance,
            $"Measuring from the closest point of each object, what is the distance between the {a.Category} and the {b.Category} (in meters)?",
            null, OneDecimal(distance));
    }

    static Draft Size(SceneObject o) =>
        new(VsiBenchQuestionTypes.ObjectSizeEstimation,
            $"What is the length of the longest dimension (length, width, or height) of the {o.Category}, measured in centimeters?",
            null, Integer((int)Math.Round(o.LongestDimension * 100, MidpointRounding.AwayFromZero)));

    static Draft RoomSize(Room room) =>
        new(VsiBenchQuestionTypes.RoomSizeEstimation,
            "What is the size of this room (in square meters)? \nIf multiple rooms are shown, estimate the size of the combined space.",
            null, OneDecimal(Math.Round(room.FloorArea, 1, MidpointRounding.AwayFromZero)));

    static Draft? RelativeDistance(Random rng, SceneObject target, IReadOnlyList<SceneObject> unique)
    {
        var others = unique.Where(o => o.Id != target.Id).OrderBy(_ => rng.Next()).Take(4).ToList();
        if (others.Count < 2) return null;
        var byDistance = others.OrderBy(o => o.DistanceTo(target)).ToList();
        if (byDistance[1].DistanceTo(target) - byDistance[0].DistanceTo(target) < RelativeDistanceMargin) return null;
        var names = others.Select(o => o.Category).ToList();
        return new(VsiBenchQuestionTypes.ObjectRelDistance,
            $"Measuring from the closest point of each object, which of these objects ({string.Join(", ", names)}) is the closest to the {target.Category}?",
            Lettered(names), Letter(others.IndexOf(byDistance[0])));
    }

    enum Direction { Easy, Medium, Hard }

    /// <summary>"If I am standing by the A and facing the B, …": the signed angle from B to C around A, left positive.</summary>
    static Draft? RelativeDirection(Random rng, Direction kind, SceneObject at, SceneObject facing, SceneObject target)
    {
        double fx = facing.X - at.X, fy = facing.Y - at.Y, gx = target.X - at.X, gy = target.Y - at.Y;
        if (Math.Sqrt(fx * fx + fy * fy) < 0.3 || Math.Sqrt(gx * gx + gy * gy) < 0.3) return null; // too close to stand "by" and face
        double angle = Math.Atan2(fx * gy - fy * gx, fx * gx + fy * gy) * 180 / Math.PI; // (−180, 180], counter-clockwise = left
        bool Near(double boundary) => Math.Abs(Math.IEEERemainder(angle - boundary, 360)) < DirectionMarginDegrees;
        string stem = $"If I am standing by the {at.Category} and facing the {facing.Category}, is the {target.Category}";
        switch (kind)
        {
            case Direction.Easy:
                if (Near(0) || Near(180)) return null;
                return new(VsiBenchQuestionTypes.ObjectRelDirectionEasy, $"{stem} to the left or the right of the {facing.Category}?",
                    ["A. left", "B. right"], angle > 0 ? "A" : "B");
            case Direction.Medium:
            {
                if (Near(0) || Near(135) || Near(-135) || Math.Abs(angle) < 30) return null; // straight ahead has no answer
                string answer = Math.Abs(angle) >= 135 ? "back" : angle > 0 ? "left" : "right";
                return Choice(rng, VsiBenchQuestionTypes.ObjectRelDirectionMedium,
                    $"{stem} to my left, right, or back?\nAn object is to my back if I would have to turn at least 135 degrees in order to face it.",
                    ["left", "right", "back"], answer);
            }
            default:
            {
                if (Near(0) || Near(90) || Near(-90) || Near(180)) return null;
                string answer = (Math.Abs(angle) < 90 ? "front" : "back") + (angle > 0 ? "-left" : "-right");
                return Choice(rng, VsiBenchQuestionTypes.ObjectRelDirectionHard,
                    $"{stem} to my front-left, front-right, back-left, or back-right?\nThe directions refer to the quadrants of a Cartesian plane (if I am standing at the origin and facing along the positive y-axis).",
                    ["front-left", "front-right", "back-left", "back-right"], answer);
            }
        }
    }

    /// <summary>Four categories whose first appearances are at least <see cref="AppearanceGapFrames"/> apart, with three wrong orders.</summary>
    static IEnumerable<Draft> AppearanceOrders(Random rng, SyntheticScene scene, int[] firstSeen)
    {
        var firstByCategory = scene.Objects.Where(o => firstSeen[o.Id] >= 0).GroupBy(o => o.Category)
            .ToDictionary(g => g.Key, g => g.Min(o => firstSeen[o.Id]));
        var categories = firstByCategory.Keys.Order(StringComparer.Ordinal).ToList();
        var asked = new HashSet<string>();
        for (int attempt = 0; attempt < 40 && categories.Count >= 4; attempt++)
        {
            var pick = categories.OrderBy(_ => rng.Next()).Take(4).ToList();
            if (!asked.Add(string.Join("|", pick.Order(StringComparer.Ordinal)))) continue;
            var frames = pick.Select(c => firstByCategory[c]).Order().ToList();
            if (frames.Zip(frames.Skip(1)).Any(p => p.Second - p.First < AppearanceGapFrames)) continue;
            var order = pick.OrderBy(c => firstByCategory[c]).ToList();
            var wrong = new List<string>();
            while (wrong.Count < 3)
            {
                string shuffled = string.Join(", ", order.OrderBy(_ => rng.Next()));
                if (shuffled != string.Join(", ", order) && !wrong.Contains(shuffled)) wrong.Add(shuffled);
            }
            yield return Choice(rng, VsiBenchQuestionTypes.AppearanceOrder,
                $"What will be the first-time appearance order of the following categories in the video: {string.Join(", ", pick)}?",
                [string.Join(", ", order), .. wrong], string.Join(", ", order));
        }
    }

    /// <summary>The choices in a random order, lettered; the ground truth is the letter of <paramref name="answer"/>.</summary>
    static Draft Choice(Random rng, string type, string question, IReadOnlyList<string> choices, string answer)
    {
        var shuffled = choices.OrderBy(_ => rng.Next()).ToList();
        return new(type, question, Lettered(shuffled), Letter(shuffled.IndexOf(answer)));
    }

    static IEnumerable<Draft> Take(Random rng, int count, IEnumerable<Draft> candidates)
    {
        var distinct = candidates.DistinctBy(d => d.Question).ToList();
        return distinct.OrderBy(_ => rng.Next()).Take(count).ToList();
    }

    static IEnumerable<(SceneObject A, SceneObject B)> Pairs(IReadOnlyList<SceneObject> objects) =>
        from a in objects from b in objects where a.Id < b.Id select (a, b);

    static IEnumerable<(SceneObject A, SceneObject B, SceneObject C)> Triples(IReadOnlyList<SceneObject> objects) =>
        from a in objects from b in objects from c in objects
        where a.Id != b.Id && b.Id != c.Id && a.Id != c.Id
        select (a, b, c);

    static IReadOnlyList<string> Lettered(IEnumerable<string> choices) => [.. choices.Select((c, i) => $"{Letter(i)}. {c}")];

    static string Letter(int index) => ((char)('A' + index)).ToString();

    static string Integer(int value) => value.ToString(CultureInfo.InvariantCulture);

    static string OneDecimal(double value) => value.ToString("0.0", CultureInfo.InvariantCulture);
}
