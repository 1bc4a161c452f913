using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// Keeps selections as JSON files under a folder, keyed by the video's content hash (SHA-256 of its bytes,
/// so renaming or moving the file still hits) and the sampler's <see cref="IFrameSampler.Settings"/>, so
/// VGGT does not run again for a video already sampled. A file whose recorded key does not match (hash-prefix
/// collision, hand edits) is recomputed and replaced.
/// </summary>
public sealed class SelectionCache(string folder)
{
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public string Folder { get; } = Path.GetFullPath(folder);

    /// <summary>Where space-aware selections are kept unless told otherwise: $XDG_CACHE_HOME (else ~/.cache)/spatial-mllm/frame-selections.</summary>
    public static string DefaultFolder => Path.Combine(
        Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
        "spatial-mllm", "frame-selections");

    /// <summary>The cached selection, or <paramref name="sampler"/>'s, stored for next time.</summary>
    public FrameSelection GetOrAdd(VideoSource video, IFrameSampler sampler)
    {
        string contentHash = video.ComputeContentHash();
        string path = PathFor(contentHash, sampler.Settings);
        if (TryRead(path, contentHash, sampler.Settings) is { } cached) return cached;

        FrameSelection selection = sampler.Select(video);
        Directory.CreateDirectory(Folder);
        string temporary = $"{path}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(new Entry(contentHash, sampler.Settings, selection), Json));
        File.Move(temporary, path, overwrite: true); // readers never see a half-written file
        return selection;
    }

    /// <summary>The file that holds (or will hold) this video's selection by a sampler with these settings.</summary>
    public string PathFor(string contentHash, string settings)
    {
        string settingsHash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(settings)))[..12];
        string samplerName = new(settings.TakeWhile(c => char.IsAsciiLetterOrDigit(c) || c == '-').ToArray());
        return Path.Combine(Folder, $"{contentHash[..16]}-{samplerName}-{settingsHash}.json");
    }

    static FrameSelection? TryRead(string path, string contentHash, string settings)
    {
        if (!File.Exists(path)) return null;
        try
        {
            Entry? entry = JsonSerializer.Deserialize<Entry>(File.ReadAllText(path), Json);
            return entry is not null && entry.ContentHash == contentHash && entry.Settings == settings ? entry.Selection : null;
        }
        catch (JsonException)
        {
            return null; // unreadable: recompute and overwrite
        }
    }

    sealed record Entry(string ContentHash, string Settings, FrameSelection Selection);
}

/// <summary>A sampler whose results go through a <see cref="SelectionCache"/>.</summary>
internal sealed class CachedFrameSampler(IFrameSampler inner, SelectionCache cache) : IFrameSampler, IDisposable
{
    public string Settings => inner.Settings;

    public FrameSelection Select(VideoSource video) => cache.GetOrAdd(video, inner);

    /// <summary>Disposes the wrapped sampler (a space-aware sampler's VGGT).</summary>
    public void Dispose() => (inner as IDisposable)?.Dispose();
}
