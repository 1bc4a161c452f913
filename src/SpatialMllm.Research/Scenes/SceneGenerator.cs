namespace SpatialMllm.Research.Scenes;

/// <summary>
/// Draws a room, its furniture and a camera walk from one seeded <see cref="Random"/> (the same seed gives the same
/// scene). The camera walks 0.92 of the way around an ellipse in the middle of the room, looking outwards at the walls and
/// sweeping its head; its speed varies ninefold along the way (it lingers on part of the room, as a person filming
/// does), so frames evenly spaced in time are not evenly spaced in space. Furniture keeps clear of the walk.
/// </summary>
internal static class SceneGenerator
{
    /// <summary>Semi-axes of the walk as a fraction of the room's width and depth.</summary>
    const double WalkFraction = 0.17;
    /// <summary>Closest any object comes to the walk, metres.</summary>
    const double WalkClearance = 0.45;
    /// <summary>Gap kept between objects and between objects and walls, metres.</summary>
    const double Gap = 0.08;
    const int PlacementAttempts = 300;

    public static Room DrawRoom(Random rng) =>
        new(Width: Uniform(rng, 5.0, 8.0), Depth: Uniform(rng, 4.5, 7.0), Height: Uniform(rng, 2.6, 3.0));

    public static List<SceneObject> DrawObjects(Random rng, Room room)
    {
        var wanted = new List<ObjectCategory> { ObjectCatalogue.Get("door") };
        wanted.AddRange(Enumerable.Repeat(ObjectCatalogue.Get("chair"), rng.Next(1, 5)));
        foreach (var category in ObjectCatalogue.Categories.Where(c => c.Name is not ("door" or "chair")).OrderBy(_ => rng.Next()))
        {
            if (rng.NextDouble() >= 0.65) continue;
            int count = category.MaxCount > 1 && rng.NextDouble() < 0.35 ? rng.Next(2, category.MaxCount + 1) : 1;
            wanted.AddRange(Enumerable.Repeat(category, count));
        }
        // Wall-bound and large objects first, so that small free ones fill the gaps that are left.
        var order = wanted.OrderBy(c => c.Placement == Placement.Free ? 1 : 0).ThenByDescending(c => c.Length * c.Width).ToList();

        var placed = new List<SceneObject>();
        foreach (var category in order)
            if (TryPlace(rng, room, category, placed) is { } placement) placed.Add(placement with { Id = placed.Count });
        return placed;
    }

    static SceneObject? TryPlace(Random rng, Room room, ObjectCategory category, List<SceneObject> placed)
    {
        double Jitter() => 1 + Uniform(rng, -ObjectCatalogue.SizeJitter, ObjectCatalogue.SizeJitter);
        double length = category.Length * Jitter(), height = category.Height * Jitter();
        double width = category.Shape == ObjectShape.Cylinder ? length : category.Width * (category.Placement == Placement.OnWall ? 1 : Jitter());
        var colour = JitterColour(rng, category.Colour);
        for (int attempt = 0; attempt < PlacementAttempts; attempt++)
        {
            (double x, double y, double yaw) = category.Placement == Placement.Free
                ? FreeSpot(rng, room, length, width)
                : WallSpot(rng, room, length, width);
            var candidate = new SceneObject(-1, category.Name, category.Shape, x, y, category.Elevation, length, width, height, yaw, colour);
            if (InsideRoom(candidate, room) && ClearOfWalk(candidate, room) && placed.All(p => Apart(candidate, p)))
                return candidate;
        }
        return null; // the room is full: the scene simply holds one object fewer
    }

    static (double X, double Y, double Yaw) FreeSpot(Random rng, Room room, double length, double width)
    {
        double reach = Math.Sqrt(length * length + width * width) / 2 + Gap;
        return (Uniform(rng, reach, room.Width - reach), Uniform(rng, reach, room.Depth - reach), Uniform(rng, -Math.PI, Math.PI));
    }

    /// <summary>Back against one of the four walls (south y=0, east x=W, north y=D, west x=0), facing into the room.</summary>
    static (double X, double Y, double Yaw) WallSpot(Random rng, Room room, double length, double width)
    {
        int wall = rng.Next(4);
        double along = wall % 2 == 0 ? room.Width : room.Depth;
        double t = Uniform(rng, length / 2 + Gap, along - length / 2 - Gap);
        double off = width / 2 + 0.01;
        return wall switch
        {
            0 => (t, off, 0),
            1 => (room.Width - off, t, Math.PI / 2),
            2 => (room.Width - t, room.Depth - off, Math.PI),
            _ => (off, room.Depth - t, -Math.PI / 2),
        };
    }

    static bool InsideRoom(SceneObject o, Room room) =>
        o.Top < room.Height - 0.05 && o.FootprintCorners().All(p => p.X > 0 && p.X < room.Width && p.Y > 0 && p.Y < room.Depth);

    static bool Apart(SceneObject a, SceneObject b) => a.DistanceTo(b) >= Gap;

    /// <summary>No point of the footprint's outline (or centre) inside the walk's ellipse grown by the clearance.</summary>
    static bool ClearOfWalk(SceneObject o, Room room)
    {
        double a = WalkFraction * room.Width + WalkClearance, b = WalkFraction * room.Depth + WalkClearance;
        bool Outside((double X, double Y) p) =>
            Math.Pow((p.X - room.Width / 2) / a, 2) + Math.Pow((p.Y - room.Depth / 2) / b, 2) >= 1;
        var corners = o.FootprintCorners();
        var outline = Enumerable.Range(0, 4).SelectMany(i => Enumerable.Range(0, 8).Select(s =>
        {
            var (p, q) = (corners[i], corners[(i + 1) % 4]);
            return (p.X + (q.X - p.X) * s / 8, p.Y + (q.Y - p.Y) * s / 8);
        }));
        return Outside((o.X, o.Y)) && outline.All(Outside);
    }

    /// <summary>
    /// The walk: angle around the room's centre θ(u) = θ₀ + 2π·0.92·(u + α sin(4πu + φ)/(4π)) for u in [0, 1]
    /// (speed 1 ± α, α = 0.8), eye height about 1.45 m, heading outwards ± a head sweep, looking 15–20° down.
    /// </summary>
    public static CameraPose[] DrawWalk(Random rng, Room room, int frames)
    {
        double theta0 = Uniform(rng, -Math.PI, Math.PI), phase = Uniform(rng, -Math.PI, Math.PI);
        double sweepPhase = Uniform(rng, -Math.PI, Math.PI), eye = Uniform(rng, 1.35, 1.55);
        const double alpha = 0.8, turns = 0.92;
        double a = WalkFraction * room.Width, b = WalkFraction * room.Depth;
        var poses = new CameraPose[frames];
        for (int i = 0; i < frames; i++)
        {
            double u = frames == 1 ? 0 : (double)i / (frames - 1);
            double theta = theta0 + 2 * Math.PI * turns * (u + alpha * Math.Sin(4 * Math.PI * u + phase) / (4 * Math.PI));
            var position = (room.Width / 2 + a * Math.Cos(theta), room.Depth / 2 + b * Math.Sin(theta), eye + 0.03 * Math.Sin(10 * Math.PI * u));
            double yaw = theta + 0.45 * Math.Sin(6 * Math.PI * u + sweepPhase);
            double pitch = -0.30 + 0.06 * Math.Sin(4 * Math.PI * u + sweepPhase);
            poses[i] = CameraPose.Looking(position, yaw, pitch);
        }
        return poses;
    }

    static double Uniform(Random rng, double low, double high) => low + (high - low) * rng.NextDouble();

    static Rgb JitterColour(Random rng, Rgb colour)
    {
        byte Shift(byte c) => (byte)Math.Clamp(c + rng.Next(-12, 13), 0, 255);
        return new Rgb(Shift(colour.R), Shift(colour.G), Shift(colour.B));
    }
}
