namespace SpatialMllm.Research.Scenes;

/// <summary>Where an object of a category goes in a room.</summary>
public enum Placement
{
    /// <summary>Anywhere on the floor, any heading.</summary>
    Free,
    /// <summary>On the floor with its back (−y side) against a wall.</summary>
    AgainstWall,
    /// <summary>Flat on a wall, at the category's height above the floor (a tv, a door).</summary>
    OnWall,
}

/// <summary>
/// One category of the synthetic rooms: its solid, its typical size in metres (each instance varies by up to
/// ±<see cref="ObjectCatalogue.SizeJitter"/>), colour, placement and how many a room may hold.
/// </summary>
public sealed record ObjectCategory(
    string Name,
    ObjectShape Shape,
    double Length,
    double Width,
    double Height,
    Rgb Colour,
    Placement Placement,
    double Elevation = 0,
    int MaxCount = 1);

/// <summary>The categories the scene generator draws from: VSI-Bench's common indoor objects, as boxes and cylinders.</summary>
public static class ObjectCatalogue
{
    /// <summary>Relative variation of each instance's size.</summary>
    public const double SizeJitter = 0.12;

    public static IReadOnlyList<ObjectCategory> Categories { get; } =
    [
        new("door", ObjectShape.Box, 0.90, 0.05, 2.05, new(120, 72, 40), Placement.OnWall),
        new("chair", ObjectShape.Box, 0.48, 0.50, 0.90, new(40, 70, 160), Placement.Free, MaxCount: 4),
        new("table", ObjectShape.Box, 1.40, 0.80, 0.75, new(170, 120, 70), Placement.Free, MaxCount: 2),
        new("bed", ObjectShape.Box, 2.00, 1.60, 0.55, new(225, 225, 235), Placement.AgainstWall),
        new("sofa", ObjectShape.Box, 2.00, 0.90, 0.85, new(160, 50, 50), Placement.AgainstWall),
        new("tv", ObjectShape.Box, 1.20, 0.08, 0.70, new(25, 25, 30), Placement.OnWall, Elevation: 1.00),
        new("cabinet", ObjectShape.Box, 1.00, 0.50, 1.90, new(200, 170, 120), Placement.AgainstWall),
        new("refrigerator", ObjectShape.Box, 0.75, 0.70, 1.80, new(215, 220, 225), Placement.AgainstWall),
        new("lamp", ObjectShape.Cylinder, 0.40, 0.40, 1.60, new(240, 200, 40), Placement.Free, MaxCount: 2),
        new("plant", ObjectShape.Cylinder, 0.50, 0.50, 1.10, new(40, 150, 60), Placement.Free, MaxCount: 2),
        new("trash can", ObjectShape.Cylinder, 0.35, 0.35, 0.50, new(110, 110, 110), Placement.Free),
        new("stool", ObjectShape.Cylinder, 0.40, 0.40, 0.50, new(230, 120, 30), Placement.Free, MaxCount: 3),
    ];

    public static ObjectCategory Get(string name) =>
        Categories.FirstOrDefault(c => c.Name == name) ?? throw new ArgumentException($"no object category '{name}'; known: {string.Join(", ", Categories.Select(c => c.Name))}");
}
