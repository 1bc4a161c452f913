using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Scenes;

/// <summary>
/// Renders a <see cref="SyntheticScene"/> by casting one ray per pixel (vectorised over all pixels of a few frames
/// with TorchSharp, float32 on the CPU): the nearest hit of the room (seen from inside) and every object gives the
/// depth, the world point and the surface id exactly, which a z-buffer rasteriser would only approximate at triangle
/// edges. Shading is Lambertian under a fixed sun plus a ceiling light, with plank-textured floor, tinted walls and a
/// skirting board, so that frames differ in colour and texture as the camera turns.
/// </summary>
internal static class SceneRenderer
{
    /// <summary>Surface ids of the room in <see cref="SceneFrames.SurfaceIds"/> (objects are 0, 1, …).</summary>
    public const int Floor = -1, Ceiling = -2, SouthWall = -3, EastWall = -4, NorthWall = -5, WestWall = -6;

    /// <summary>Frames rendered together; bounds the [frames, pixels, objects, 3] temporaries (~25 MB at 224×168, 14 objects).</summary>
    const int FramesPerPass = 4;
    const float Epsilon = 1e-4f;

    public static SceneFrames Render(SyntheticScene scene, IReadOnlyList<int> frames)
    {
        foreach (int f in frames)
            if (f < 0 || f >= scene.FrameCount)
                throw new ArgumentOutOfRangeException(nameof(frames), $"frame {f} is outside 0..{scene.FrameCount - 1} of {scene}");
        if (frames.Count == 0)
        {
            var (h, w) = (scene.Intrinsics.Height, scene.Intrinsics.Width);
            return new SceneFrames([], torch.zeros([0, 3, h, w], ScalarType.Byte), torch.zeros([0, h, w]),
                torch.zeros([0, h, w, 3]), torch.zeros([0, h, w], int32));
        }

        var parts = new List<(Tensor Rgb, Tensor Depth, Tensor Points, Tensor Ids)>();
        using (var outer = torch.NewDisposeScope())
        {
            var objects = ObjectTable.Of(scene.Objects);
            Tensor cameraRays = CameraRays(scene.Intrinsics);
            foreach (int[] chunk in frames.Chunk(FramesPerPass))
            {
                using var scope = torch.NewDisposeScope();
                var result = RenderChunk(scene, chunk, cameraRays, objects);
                parts.Add((result.Rgb.MoveToOuterDisposeScope(), result.Depth.MoveToOuterDisposeScope(),
                    result.Points.MoveToOuterDisposeScope(), result.Ids.MoveToOuterDisposeScope()));
            }
            var all = (Rgb: torch.cat(parts.Select(p => p.Rgb).ToList(), 0), Depth: torch.cat(parts.Select(p => p.Depth).ToList(), 0),
                Points: torch.cat(parts.Select(p => p.Points).ToList(), 0), Ids: torch.cat(parts.Select(p => p.Ids).ToList(), 0));
            return new SceneFrames([.. frames], all.Rgb.DetachFromDisposeScope(), all.Depth.DetachFromDisposeScope(),
                all.Points.DetachFromDisposeScope(), all.Ids.DetachFromDisposeScope());
        }
    }

    /// <summary>The ray direction of every pixel in camera coordinates, z = 1 (so a hit's ray parameter is its depth): [H·W, 3].</summary>
    static Tensor CameraRays(CameraIntrinsics k)
    {
        Tensor u = torch.arange(k.Width, dtype: float64).sub(k.Cx).div(k.Fx);
        Tensor v = torch.arange(k.Height, dtype: float64).sub(k.Cy).div(k.Fy);
        var grid = torch.meshgrid([v, u], indexing: "ij");           // [H, W] each
        return torch.stack([grid[1], grid[0], torch.ones_like(grid[0])], dim: -1).reshape(-1, 3).to(float32);
    }

    static (Tensor Rgb, Tensor Depth, Tensor Points, Tensor Ids) RenderChunk(SyntheticScene scene, int[] frames, Tensor cameraRays, ObjectTable objects)
    {
        int b = frames.Length, h = scene.Intrinsics.Height, w = scene.Intrinsics.Width;
        var poses = frames.Select(f => scene.Poses[f]).ToArray();
        Tensor rotation = torch.tensor(poses.SelectMany(p => p.CameraToWorld).ToArray(), [b, 3, 3], float64).to(float32);
        Tensor origin = torch.tensor(poses.SelectMany(p => new[] { p.Position.X, p.Position.Y, p.Position.Z }).ToArray(), [b, 1, 3], float64).to(float32);
        Tensor direction = torch.einsum("pj,bij->bpi", cameraRays, rotation);   // [B, P, 3] world directions

        (Tensor roomT, Tensor roomId, Tensor roomNormal) = RoomHits(scene.Room, origin, direction);
        Tensor depth = roomT, surface = roomId, normal = roomNormal;                 // [B,P], [B,P], [B,P,3]
        if (objects.Count > 0)
        {
            Tensor objectT = objects.Hits(origin, direction);                     // [B, P, N]
            (Tensor nearest, Tensor which) = objectT.min(-1);
            Tensor objectWins = nearest < roomT;
            depth = torch.where(objectWins, nearest, roomT);
            surface = torch.where(objectWins, which, roomId);
            Tensor points = origin + depth.unsqueeze(-1) * direction;
            normal = torch.where(objectWins.unsqueeze(-1), objects.Normals(points, which), roomNormal);
        }
        Tensor world = origin + depth.unsqueeze(-1) * direction;                   // [B, P, 3]
        Tensor albedo = Albedo(scene, world, surface, objects);
        Tensor rgb = Shade(scene.Room, world, normal, albedo).mul(255).round().clamp(0, 255).to(ScalarType.Byte);
        return (rgb.reshape(b, h, w, 3).permute(0, 3, 1, 2).contiguous(), depth.reshape(b, h, w),
            world.reshape(b, h, w, 3), surface.to(int32).reshape(b, h, w));
    }

    /// <summary>Where each ray leaves the room box [0,W]×[0,D]×[0,H] (the camera is inside), which face, and its inward normal.</summary>
    static (Tensor T, Tensor Id, Tensor Normal) RoomHits(Room room, Tensor origin, Tensor direction)
    {
        Tensor high = torch.tensor(new[] { (float)room.Width, (float)room.Depth, (float)room.Height });
        Tensor d = SafeDivisor(direction);
        Tensor faceT = torch.where(d > 0, (high - origin) / d, origin.neg() / d);   // [B, P, 3]
        (Tensor t, Tensor axis) = faceT.min(-1);
        Tensor positive = d.gather(-1, axis.unsqueeze(-1)).squeeze(-1) > 0;
        // axis 0: east (x=W) / west, axis 1: north (y=D) / south, axis 2: ceiling / floor.
        Tensor idIfPositive = torch.tensor(new long[] { EastWall, NorthWall, Ceiling }).index(axis);
        Tensor idIfNegative = torch.tensor(new long[] { WestWall, SouthWall, Floor }).index(axis);
        Tensor id = torch.where(positive, idIfPositive, idIfNegative);
        Tensor normal = torch.nn.functional.one_hot(axis, 3).to(float32) * (1 - 2 * positive.to(float32)).unsqueeze(-1);
        return (t, id, normal);
    }

    /// <summary>t where a hit is valid, else ∞.</summary>
    static Tensor Where(Tensor valid, Tensor t) => t.masked_fill(valid.logical_not(), float.PositiveInfinity);

    static Tensor SafeDivisor(Tensor d) => d.masked_fill(d.abs() < 1e-12f, 1e-12f);

    static Tensor Albedo(SyntheticScene scene, Tensor world, Tensor surface, ObjectTable objects)
    {
        Room room = scene.Room;
        Tensor x = world[.., .., 0], y = world[.., .., 1], z = world[.., .., 2];
        // Floor: 0.2 m planks along x, each a little lighter or darker, with dark joints.
        Tensor plank = y.div(0.2).floor();
        Tensor plankShade = plank.mul(12.9898f).sin().mul(43758.547f).frac().abs().mul(0.25f).add(0.8f);
        Tensor joint = (y.div(0.2).frac().abs() < 0.04f) | ((x + plank.mul(0.37f)).div(1.2).frac().abs() < 0.015f);
        Tensor floor = Colour(0.62, 0.47, 0.32) * plankShade.masked_fill(joint, 0.6).unsqueeze(-1);

        Tensor wallColour = torch.tensor(new[]
        {
            0.86f, 0.82f, 0.74f,   // south
            0.74f, 0.81f, 0.86f,   // east
            0.87f, 0.77f, 0.77f,   // north
            0.79f, 0.85f, 0.74f,   // west
        }).reshape(4, 3).index((surface.clamp(WestWall, SouthWall).neg() - 3).to(int64));
        Tensor skirting = (z < 0.12f).unsqueeze(-1);
        Tensor dado = ((z - 0.9f).abs() < 0.025f).unsqueeze(-1);
        Tensor wall = torch.where(skirting, Colour(0.32, 0.28, 0.26), torch.where(dado, wallColour * 0.7f, wallColour));

        Tensor ceiling = Colour(0.93, 0.93, 0.92).expand_as(floor);
        Tensor albedo = torch.where((surface == Floor).unsqueeze(-1), floor,
            torch.where((surface == Ceiling).unsqueeze(-1), ceiling, wall));
        if (objects.Count > 0)
            albedo = torch.where((surface >= 0).unsqueeze(-1), objects.Colour.index(surface.clamp_min(0).to(int64)), albedo);
        return albedo;
    }

    static Tensor Shade(Room room, Tensor world, Tensor normal, Tensor albedo)
    {
        Tensor sun = torch.tensor(new[] { 0.40f, 0.25f, 0.88f });
        sun = sun / sun.norm();
        Tensor lamp = torch.tensor(new[] { (float)room.Width / 2, (float)room.Depth / 2, (float)room.Height - 0.1f });
        Tensor toLamp = lamp - world;
        Tensor distance = toLamp.norm(dim: -1, keepdim: true).clamp_min(0.1f);
        Tensor lampLight = (normal * toLamp).sum(-1, keepdim: true).div(distance).clamp_min(0) * 0.6f / (1 + 0.08f * distance.square());
        Tensor sunLight = (normal * sun).sum(-1, keepdim: true).clamp_min(0) * 0.35f;
        return albedo * (0.35f + sunLight + lampLight);
    }

    static Tensor Colour(double r, double g, double b) => torch.tensor(new[] { (float)r, (float)g, (float)b });

    /// <summary>The scene's objects as tensors, one row each, for ray intersection.</summary>
    sealed class ObjectTable
    {
        public int Count { get; private init; }
        Tensor centre = null!, half = null!, cos = null!, sin = null!, cylinder = null!;
        public Tensor Colour { get; private init; } = null!;

        public static ObjectTable Of(IReadOnlyList<SceneObject> objects) => new()
        {
            Count = objects.Count,
            centre = torch.tensor(objects.SelectMany(o => new[] { (float)o.X, (float)o.Y, (float)(o.Bottom + o.Height / 2) }).ToArray(), [objects.Count, 3]),
            half = torch.tensor(objects.SelectMany(o => new[] { (float)o.Length / 2, (float)o.Width / 2, (float)o.Height / 2 }).ToArray(), [objects.Count, 3]),
            cos = torch.tensor(objects.Select(o => (float)Math.Cos(o.Yaw)).ToArray()),
            sin = torch.tensor(objects.Select(o => (float)Math.Sin(o.Yaw)).ToArray()),
            cylinder = torch.tensor(objects.Select(o => o.Shape == ObjectShape.Cylinder).ToArray()),
            Colour = torch.tensor(objects.SelectMany(o => new[] { o.Colour.R / 255f, o.Colour.G / 255f, o.Colour.B / 255f }).ToArray(), [objects.Count, 3]),
        };

        /// <summary>Vectors [..., N or 1, 3] turned into each object's frame: [..., N, 3].</summary>
        Tensor ToLocal(Tensor v)
        {
            Tensor vx = v[TensorIndex.Ellipsis, 0], vy = v[TensorIndex.Ellipsis, 1], vz = v[TensorIndex.Ellipsis, 2];
            Tensor lx = cos * vx + sin * vy, ly = cos * vy - sin * vx;
            return torch.stack([lx, ly, vz.expand_as(lx)], dim: -1);
        }

        /// <summary>Ray parameter of each object's first hit in front of the camera (∞ for a miss): [B, P, N].</summary>
        public Tensor Hits(Tensor origin, Tensor direction)
        {
            Tensor o = ToLocal(origin.unsqueeze(-2) - centre);   // [B, 1, N, 3]
            Tensor d = ToLocal(direction.unsqueeze(-2));         // [B, P, N, 3]
            return torch.where(cylinder, CylinderHits(o, d), BoxHits(o, d));
        }

        Tensor BoxHits(Tensor o, Tensor d)
        {
            Tensor inverse = SafeDivisor(d).reciprocal();
            Tensor t1 = (half.neg() - o) * inverse, t2 = (half - o) * inverse;
            Tensor near = torch.minimum(t1, t2).amax(-1), far = torch.maximum(t1, t2).amin(-1);
            return Where((near <= far) & (near > Epsilon), near);
        }

        Tensor CylinderHits(Tensor o, Tensor d)
        {
            Tensor radius = half[.., 0], halfHeight = half[.., 2];
            Tensor ox = o[TensorIndex.Ellipsis, 0], oy = o[TensorIndex.Ellipsis, 1], oz = o[TensorIndex.Ellipsis, 2];
            Tensor dx = d[TensorIndex.Ellipsis, 0], dy = d[TensorIndex.Ellipsis, 1], dz = d[TensorIndex.Ellipsis, 2];
            Tensor a = (dx.square() + dy.square()).clamp_min(1e-12f);
            Tensor halfB = ox * dx + oy * dy;
            Tensor c = ox.square() + oy.square() - radius.square();
            Tensor discriminant = halfB.square() - a * c;
            Tensor side = (halfB.neg() - discriminant.clamp_min(0).sqrt()) / a;
            Tensor sideOk = (discriminant >= 0) & (side > Epsilon) & ((oz + side * dz).abs() <= halfHeight);
            Tensor best = Where(sideOk, side);
            Tensor safeDz = SafeDivisor(dz);
            foreach (Tensor capZ in new[] { halfHeight, halfHeight.neg() })
            {
                Tensor cap = (capZ - oz) / safeDz;
                Tensor capOk = (cap > Epsilon) & ((ox + cap * dx).square() + (oy + cap * dy).square() <= radius.square());
                best = torch.minimum(best, Where(capOk, cap));
            }
            return best;
        }

        /// <summary>Outward normals in world coordinates at hit points [B, P, 3] on objects <paramref name="which"/> [B, P].</summary>
        public Tensor Normals(Tensor points, Tensor which)
        {
            Tensor c = cos.index(which), s = sin.index(which), h = half.index(which), isCylinder = cylinder.index(which);
            Tensor rel = points - centre.index(which);
            Tensor qx = c * rel[.., .., 0] + s * rel[.., .., 1], qy = -s * rel[.., .., 0] + c * rel[.., .., 1], qz = rel[.., .., 2];
            Tensor q = torch.stack([qx, qy, qz], -1);
            // Box: the face whose slab the point is at the edge of; cylinder: side or cap, whichever it is nearer.
            Tensor boxAxis = (q.abs() / h).argmax(-1);
            Tensor boxNormal = torch.nn.functional.one_hot(boxAxis, 3).to(float32) * q.sign();
            Tensor radial = (qx.square() + qy.square()).sqrt();
            Tensor onSide = radial / h[.., .., 0] >= qz.abs() / h[.., .., 2];
            Tensor sideNormal = torch.stack([qx, qy, torch.zeros_like(qx)], -1) / radial.clamp_min(1e-6f).unsqueeze(-1);
            Tensor capNormal = torch.stack([torch.zeros_like(qz), torch.zeros_like(qz), qz.sign()], -1);
            Tensor local = torch.where(isCylinder.unsqueeze(-1), torch.where(onSide.unsqueeze(-1), sideNormal, capNormal), boxNormal);
            Tensor nx = local[.., .., 0], ny = local[.., .., 1];
            return torch.stack([c * nx - s * ny, s * nx + c * ny, local[.., .., 2]], -1);
        }
    }
}
