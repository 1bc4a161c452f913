using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Scenes;

/// <summary>
/// Renders a <see cref="SyntheticScene"/> by casting one ray per pixel, in plain C# float64 arithmetic: the nearest
/// hit of the room (seen from inside) and of every object in view gives the depth, the world point and the surface id
/// exactly, which a z-buffer rasteriser would only approximate at triangle edges. Shading is Lambertian under a fixed
/// sun plus a ceiling light, with a plank floor, tinted walls, a skirting board and a dado line, so frames differ in
/// colour and texture as the camera turns. Scalar code rather than TorchSharp: a frame is ~40k rays against a handful
/// of objects, which is far cheaper than the dozens of tensor passes (and thread hand-offs) a vectorised version needs.
/// </summary>
internal static class SceneRenderer
{
    /// <summary>Surface ids of the room in <see cref="SceneFrames.SurfaceIds"/> (objects are 0, 1, …).</summary>
    public const int Floor = -1, Ceiling = -2, SouthWall = -3, EastWall = -4, NorthWall = -5, WestWall = -6;

    /// <summary>Hits nearer than this along a ray (depth units, metres) are ignored.</summary>
    const double Epsilon = 1e-6;

    static readonly (double R, double G, double B)[] WallColours =
    [
        (0.86, 0.82, 0.74),   // south (y = 0)
        (0.74, 0.81, 0.86),   // east (x = W)
        (0.87, 0.77, 0.77),   // north (y = D)
        (0.79, 0.85, 0.74),   // west (x = 0)
    ];

    public static SceneFrames Render(SyntheticScene scene, IReadOnlyList<int> frames)
    {
        foreach (int f in frames)
            if (f < 0 || f >= scene.FrameCount)
                throw new ArgumentOutOfRangeException(nameof(frames), $"frame {f} is outside 0..{scene.FrameCount - 1} of {scene}");
        int h = scene.Intrinsics.Height, w = scene.Intrinsics.Width, n = frames.Count, pixels = h * w;
        var buffers = new FrameBuffers(new byte[n * 3 * pixels], new float[n * pixels], new float[n * pixels * 3], new int[n * pixels]);
        var solids = scene.Objects.Select(Solid.Of).ToArray();
        for (int t = 0; t < n; t++) RenderFrame(scene, scene.Poses[frames[t]], solids, buffers, t);
        return new SceneFrames([.. frames],
            torch.tensor(buffers.Rgb, [n, 3, h, w]),
            torch.tensor(buffers.Depth, [n, h, w]),
            torch.tensor(buffers.Points, [n, h, w, 3]),
            torch.tensor(buffers.Ids, [n, h, w]));
    }

    /// <summary>Output arrays of all frames: rgb [T,3,H,W], depth [T,H,W], points [T,H,W,3], ids [T,H,W].</summary>
    sealed record FrameBuffers(byte[] Rgb, float[] Depth, float[] Points, int[] Ids);

    static void RenderFrame(SyntheticScene scene, CameraPose pose, Solid[] solids, FrameBuffers output, int t)
    {
        var k = scene.Intrinsics;
        var room = scene.Room;
        int h = k.Height, w = k.Width, pixels = h * w;
        double[] r = pose.CameraToWorld;
        var o = new Vec(pose.Position.X, pose.Position.Y, pose.Position.Z);
        var inView = solids.Where(s => s.InView(k, pose)).ToArray();
        var lamp = new Vec(room.Width / 2, room.Depth / 2, room.Height - 0.1);

        // Rows are independent, so they render in parallel; every pixel's value is the same whatever the schedule.
        Parallel.For(0, h, v =>
        {
            double cy = (v - k.Cy) / k.Fy;
            for (int u = 0; u < w; u++)
            {
                double cx = (u - k.Cx) / k.Fx;
                // World direction R·(cx, cy, 1): its camera z is 1, so the ray parameter of a hit is its depth.
                var d = new Vec(r[0] * cx + r[1] * cy + r[2], r[3] * cx + r[4] * cy + r[5], r[6] * cx + r[7] * cy + r[8]);
                (double depth, int id, Vec normal) = RoomHit(room, o, d);
                Solid? hitSolid = null;
                foreach (var solid in inView)
                {
                    double hit = solid.Intersect(o, d);
                    if (hit < depth) (depth, hitSolid) = (hit, solid);
                }
                var p = o + depth * d;
                if (hitSolid is not null) (id, normal) = (hitSolid.Id, hitSolid.Normal(p));
                var albedo = hitSolid?.Colour ?? RoomAlbedo(id, p);
                double light = Light(p, normal, lamp);

                int pixel = v * w + u, at = t * pixels + pixel;
                output.Depth[at] = (float)depth;
                output.Ids[at] = id;
                output.Points[3 * at] = (float)p.X;
                output.Points[3 * at + 1] = (float)p.Y;
                output.Points[3 * at + 2] = (float)p.Z;
                int rgb = t * 3 * pixels + pixel;
                output.Rgb[rgb] = ToByte(albedo.X * light);
                output.Rgb[rgb + pixels] = ToByte(albedo.Y * light);
                output.Rgb[rgb + 2 * pixels] = ToByte(albedo.Z * light);
            }
        });
    }

    static byte ToByte(double value) => (byte)Math.Clamp(Math.Round(value * 255), 0, 255);

    /// <summary>Where the ray leaves the room box [0,W]×[0,D]×[0,H] (the camera is inside), which face, its inward normal.</summary>
    static (double T, int Id, Vec Normal) RoomHit(Room room, Vec o, Vec d)
    {
        double tx = d.X > 0 ? (room.Width - o.X) / d.X : d.X < 0 ? -o.X / d.X : double.PositiveInfinity;
        double ty = d.Y > 0 ? (room.Depth - o.Y) / d.Y : d.Y < 0 ? -o.Y / d.Y : double.PositiveInfinity;
        double tz = d.Z > 0 ? (room.Height - o.Z) / d.Z : d.Z < 0 ? -o.Z / d.Z : double.PositiveInfinity;
        if (tz <= tx && tz <= ty) return d.Z > 0 ? (tz, Ceiling, new Vec(0, 0, -1)) : (tz, Floor, new Vec(0, 0, 1));
        if (tx <= ty) return d.X > 0 ? (tx, EastWall, new Vec(-1, 0, 0)) : (tx, WestWall, new Vec(1, 0, 0));
        return d.Y > 0 ? (ty, NorthWall, new Vec(0, -1, 0)) : (ty, SouthWall, new Vec(0, 1, 0));
    }

    static Vec RoomAlbedo(int id, Vec p)
    {
        if (id == Ceiling) return new Vec(0.93, 0.93, 0.92);
        if (id == Floor)
        {
            // 0.2 m planks along x, each a little lighter or darker (an integer hash, the same on every machine),
            // with dark joints between planks and every 1.2 m along them.
            long plank = (long)Math.Floor(p.Y / 0.2);
            double shade = 0.8 + 0.25 * (((ulong)(plank * 2654435761L) >> 8) % 256) / 255.0;
            double across = p.Y / 0.2 - plank;
            double along = (p.X + 0.37 * plank) / 1.2;
            bool joint = across < 0.04 || along - Math.Floor(along) < 0.015;
            return new Vec(0.62, 0.47, 0.32) * (joint ? 0.6 : shade);
        }
        if (p.Z < 0.12) return new Vec(0.32, 0.28, 0.26);                     // skirting board
        var (red, green, blue) = WallColours[SouthWall - id];
        return new Vec(red, green, blue) * (Math.Abs(p.Z - 0.9) < 0.025 ? 0.7 : 1); // dado line
    }

    static readonly Vec Sun = new Vec(0.40, 0.25, 0.88).Normalised();

    static double Light(Vec p, Vec normal, Vec lamp)
    {
        var toLamp = lamp - p;
        double distance = Math.Max(0.1, toLamp.Length);
        double lampLight = Math.Max(0, normal.Dot(toLamp) / distance) * 0.6 / (1 + 0.08 * distance * distance);
        return 0.35 + 0.35 * Math.Max(0, normal.Dot(Sun)) + lampLight;
    }

    readonly record struct Vec(double X, double Y, double Z)
    {
        public static Vec operator +(Vec a, Vec b) => new(a.X + b.X, a.Y + b.Y, a.Z + b.Z);
        public static Vec operator -(Vec a, Vec b) => new(a.X - b.X, a.Y - b.Y, a.Z - b.Z);
        public static Vec operator *(double s, Vec a) => new(s * a.X, s * a.Y, s * a.Z);
        public static Vec operator *(Vec a, double s) => s * a;
        public double Dot(Vec b) => X * b.X + Y * b.Y + Z * b.Z;
        public double Length => Math.Sqrt(Dot(this));
        public Vec Normalised() => this * (1 / Length);
    }

    /// <summary>An object prepared for ray casting: centre, half extents and heading.</summary>
    sealed class Solid
    {
        public int Id { get; private init; }
        public Vec Colour { get; private init; }
        SceneObject source = null!;
        Vec centre, half;
        double cos, sin;
        bool cylinder;

        public static Solid Of(SceneObject o) => new()
        {
            Id = o.Id,
            Colour = new Vec(o.Colour.R / 255.0, o.Colour.G / 255.0, o.Colour.B / 255.0),
            source = o,
            centre = new Vec(o.X, o.Y, o.Bottom + o.Height / 2),
            half = new Vec(o.Length / 2, o.Width / 2, o.Height / 2),
            cos = Math.Cos(o.Yaw),
            sin = Math.Sin(o.Yaw),
            cylinder = o.Shape == ObjectShape.Cylinder,
        };

        Vec ToLocal(Vec v) => new(cos * v.X + sin * v.Y, cos * v.Y - sin * v.X, v.Z);

        Vec ToWorld(Vec v) => new(cos * v.X - sin * v.Y, sin * v.X + cos * v.Y, v.Z);

        /// <summary>
        /// Whether the bounding sphere meets the viewing frustum (planes through the camera centre and a pixel beyond
        /// the image border), so that objects behind or beside the camera are never intersected.
        /// </summary>
        public bool InView(CameraIntrinsics k, CameraPose pose)
        {
            double[] r = pose.CameraToWorld;
            var rel = centre - new Vec(pose.Position.X, pose.Position.Y, pose.Position.Z);
            double x = r[0] * rel.X + r[3] * rel.Y + r[6] * rel.Z;
            double y = r[1] * rel.X + r[4] * rel.Y + r[7] * rel.Z;
            double z = r[2] * rel.X + r[5] * rel.Y + r[8] * rel.Z;
            double radius = half.Length;
            if (z < -radius) return false;
            // Inside a side plane through the camera centre: a·coordinate + b·z ≥ 0, (a, b) normalised.
            bool Inside(double a, double coordinate, double b) => (a * coordinate + b * z) / Math.Sqrt(a * a + b * b) >= -radius;
            double left = (-1.5 - k.Cx) / k.Fx, right = (k.Width + 0.5 - k.Cx) / k.Fx;
            double top = (-1.5 - k.Cy) / k.Fy, bottom = (k.Height + 0.5 - k.Cy) / k.Fy;
            return Inside(1, x, -left) && Inside(-1, x, right) && Inside(1, y, -top) && Inside(-1, y, bottom);
        }

        /// <summary>Ray parameter of the first hit in front of the origin, ∞ for a miss.</summary>
        public double Intersect(Vec origin, Vec direction)
        {
            var o = ToLocal(origin - centre);
            var d = ToLocal(direction);
            return cylinder ? CylinderHit(o, d) : BoxHit(o, d);
        }

        double BoxHit(Vec o, Vec d)
        {
            double near = double.NegativeInfinity, far = double.PositiveInfinity;
            if (!Slab(o.X, d.X, half.X, ref near, ref far) || !Slab(o.Y, d.Y, half.Y, ref near, ref far)
                || !Slab(o.Z, d.Z, half.Z, ref near, ref far)) return double.PositiveInfinity;
            return near <= far && near > Epsilon ? near : double.PositiveInfinity;
        }

        static bool Slab(double o, double d, double h, ref double near, ref double far)
        {
            if (d == 0) return Math.Abs(o) <= h;
            double t1 = (-h - o) / d, t2 = (h - o) / d;
            near = Math.Max(near, Math.Min(t1, t2));
            far = Math.Min(far, Math.Max(t1, t2));
            return true;
        }

        double CylinderHit(Vec o, Vec d)
        {
            double radius = half.X, best = double.PositiveInfinity;
            double a = d.X * d.X + d.Y * d.Y, halfB = o.X * d.X + o.Y * d.Y, c = o.X * o.X + o.Y * o.Y - radius * radius;
            double discriminant = halfB * halfB - a * c;
            if (a > 0 && discriminant >= 0)
            {
                double side = (-halfB - Math.Sqrt(discriminant)) / a;
                if (side > Epsilon && Math.Abs(o.Z + side * d.Z) <= half.Z) best = side;
            }
            if (d.Z != 0)
                foreach (double capZ in (ReadOnlySpan<double>)[half.Z, -half.Z])
                {
                    double cap = (capZ - o.Z) / d.Z;
                    double x = o.X + cap * d.X, y = o.Y + cap * d.Y;
                    if (cap > Epsilon && cap < best && x * x + y * y <= radius * radius) best = cap;
                }
            return best;
        }

        /// <summary>Outward normal at a surface point: the face (box) or side/cap (cylinder) the point is on.</summary>
        public Vec Normal(Vec p)
        {
            var q = ToLocal(p - centre);
            if (cylinder)
            {
                double radial = Math.Sqrt(q.X * q.X + q.Y * q.Y);
                return radial / half.X >= Math.Abs(q.Z) / half.Z
                    ? ToWorld(new Vec(q.X / radial, q.Y / radial, 0))
                    : new Vec(0, 0, Math.Sign(q.Z));
            }
            double ax = Math.Abs(q.X) / half.X, ay = Math.Abs(q.Y) / half.Y, az = Math.Abs(q.Z) / half.Z;
            var local = ax >= ay && ax >= az ? new Vec(Math.Sign(q.X), 0, 0)
                : ay >= az ? new Vec(0, Math.Sign(q.Y), 0)
                : new Vec(0, 0, Math.Sign(q.Z));
            return ToWorld(local);
        }

        public override string ToString() => source.ToString();
    }
}
