namespace SpatialMllm.Research.Scenes;

/// <summary>The solid a scene object is made of.</summary>
public enum ObjectShape
{
    /// <summary>A box turned by <see cref="SceneObject.Yaw"/> about the vertical axis.</summary>
    Box,
    /// <summary>An upright cylinder of diameter <see cref="SceneObject.Length"/> (= <see cref="SceneObject.Width"/>).</summary>
    Cylinder,
}

/// <summary>An RGB colour, 0–255 per channel.</summary>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    public override string ToString() => $"#{R:x2}{G:x2}{B:x2}";
}

/// <summary>
/// One object of a synthetic room: an upright prism (a box turned about the vertical, or a cylinder) standing on
/// its base. World frame: metres, x along the room's width, y along its depth, z up, the floor at z = 0.
/// </summary>
/// <param name="Id">Position in <see cref="SyntheticScene.Objects"/>; the id rendered in <see cref="SceneFrames.SurfaceIds"/>.</param>
/// <param name="Category">VSI-Bench-style category name ("chair", "tv", …).</param>
/// <param name="X">Centre of the footprint, x.</param>
/// <param name="Y">Centre of the footprint, y.</param>
/// <param name="Bottom">Height of the base above the floor (a wall-mounted tv hangs above it).</param>
/// <param name="Length">Extent along the object's own x axis (for a cylinder: the diameter).</param>
/// <param name="Width">Extent along the object's own y axis (for a cylinder: the diameter).</param>
/// <param name="Height">Vertical extent.</param>
/// <param name="Yaw">Turn of the object's x axis from the world's x axis, radians, counter-clockwise seen from above.</param>
public sealed record SceneObject(
    int Id,
    string Category,
    ObjectShape Shape,
    double X,
    double Y,
    double Bottom,
    double Length,
    double Width,
    double Height,
    double Yaw,
    Rgb Colour)
{
    public double Top => Bottom + Height;

    /// <summary>Centre of the object's volume.</summary>
    public (double X, double Y, double Z) Centre => (X, Y, Bottom + Height / 2);

    /// <summary>The longest of length, width and height (what VSI-Bench's object-size question asks for).</summary>
    public double LongestDimension => Math.Max(Height, Math.Max(Length, Width));

    /// <summary>A cylinder's radius (its footprint is a disc of diameter <see cref="Length"/>).</summary>
    double Radius => Length / 2;

    public override string ToString() =>
        $"{Category} #{Id}: {Shape.ToString().ToLowerInvariant()} {Length:0.00}×{Width:0.00}×{Height:0.00} m at ({X:0.00}, {Y:0.00}, {Bottom:0.00}), yaw {Yaw * 180 / Math.PI:0}°, {Colour}";

    /// <summary>The four corners of the footprint of a box (counter-clockwise), or of a cylinder's bounding square.</summary>
    public (double X, double Y)[] FootprintCorners()
    {
        double c = Math.Cos(Yaw), s = Math.Sin(Yaw), hx = Length / 2, hy = Width / 2;
        return [.. new[] { (-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy) }
            .Select(p => (X + c * p.Item1 - s * p.Item2, Y + s * p.Item1 + c * p.Item2))];
    }

    /// <summary>Whether the world point lies in the solid grown by <paramref name="tolerance"/> metres (shrunk, if negative).</summary>
    public bool Contains(double x, double y, double z, double tolerance = 0)
    {
        if (z < Bottom - tolerance || z > Top + tolerance) return false;
        if (Shape == ObjectShape.Cylinder) return Math.Sqrt((x - X) * (x - X) + (y - Y) * (y - Y)) <= Radius + tolerance;
        (double lx, double ly) = ToLocal(x, y);
        return Math.Abs(lx) <= Length / 2 + tolerance && Math.Abs(ly) <= Width / 2 + tolerance;
    }

    /// <summary>A world point on the floor plane in the object's own frame (origin at the footprint centre).</summary>
    public (double X, double Y) ToLocal(double x, double y)
    {
        double c = Math.Cos(Yaw), s = Math.Sin(Yaw), dx = x - X, dy = y - Y;
        return (c * dx + s * dy, -s * dx + c * dy);
    }

    /// <summary>
    /// The distance between the closest points of the two solids (0 when they touch): both are vertical prisms, so it is
    /// √(gap between the footprints² + gap between the height intervals²).
    /// </summary>
    public double DistanceTo(SceneObject other)
    {
        double vertical = Math.Max(0, Math.Max(other.Bottom - Top, Bottom - other.Top));
        double horizontal = FootprintGap(this, other);
        return Math.Sqrt(horizontal * horizontal + vertical * vertical);
    }

    /// <summary>The gap between two footprints (rectangles or discs, all convex) in the floor plane.</summary>
    static double FootprintGap(SceneObject a, SceneObject b)
    {
        if (a.Shape == ObjectShape.Cylinder && b.Shape == ObjectShape.Cylinder)
            return Math.Max(0, Math.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y)) - a.Radius - b.Radius);
        if (a.Shape == ObjectShape.Cylinder) (a, b) = (b, a);
        if (b.Shape == ObjectShape.Cylinder) return Math.Max(0, a.DistanceToFootprint(b.X, b.Y) - b.Radius);
        // Two rectangles: 0 if they overlap, else the smallest corner-to-edge distance either way.
        if (Overlap(a, b)) return 0;
        return Math.Min(
            b.FootprintCorners().Min(p => a.DistanceToFootprint(p.X, p.Y)),
            a.FootprintCorners().Min(p => b.DistanceToFootprint(p.X, p.Y)));
    }

    /// <summary>Distance from a floor point to a box's footprint (0 inside).</summary>
    double DistanceToFootprint(double x, double y)
    {
        (double lx, double ly) = ToLocal(x, y);
        double dx = Math.Max(0, Math.Abs(lx) - Length / 2), dy = Math.Max(0, Math.Abs(ly) - Width / 2);
        return Math.Sqrt(dx * dx + dy * dy);
    }

    /// <summary>Separating-axis test of two box footprints.</summary>
    static bool Overlap(SceneObject a, SceneObject b)
    {
        var ca = a.FootprintCorners();
        var cb = b.FootprintCorners();
        foreach (double yaw in new[] { a.Yaw, a.Yaw + Math.PI / 2, b.Yaw, b.Yaw + Math.PI / 2 })
        {
            double ax = Math.Cos(yaw), ay = Math.Sin(yaw);
            double minA = ca.Min(p => p.X * ax + p.Y * ay), maxA = ca.Max(p => p.X * ax + p.Y * ay);
            double minB = cb.Min(p => p.X * ax + p.Y * ay), maxB = cb.Max(p => p.X * ax + p.Y * ay);
            if (maxA < minB || maxB < minA) return false;
        }
        return true;
    }
}

/// <summary>The room: an empty box [0, Width] × [0, Depth] × [0, Height] in metres (floor, four walls, ceiling).</summary>
public sealed record Room(double Width, double Depth, double Height)
{
    /// <summary>Floor area in square metres (VSI-Bench's room size).</summary>
    public double FloorArea => Width * Depth;
}
