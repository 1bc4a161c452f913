using System.CommandLine;
using System.Text.Json;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm sample-frames --video V --sampler uniform|space-aware|keyframes --k 16 [--out DIR]
/// [--model DIR] [--cache DIR]</c>: writes the selected frames as PNG at their original resolution
/// (<c>{video}_frame_{index:000000}.png</c>, as <c>sa_sampling.py</c> names them) and <c>selection.json</c>
/// (indices and the sampler's diagnostics) into the output folder.
/// </summary>
internal static class SampleFramesCommand
{
    public static Command Create()
    {
        var video = new Option<string>("--video") { Description = "Video file, or a folder of PNG frames", Required = true };
        var sampler = new Option<string>("--sampler") { Description = "Frame sampler", DefaultValueFactory = _ => "uniform" };
        sampler.AcceptOnlyFromAmong("uniform", "space-aware", "keyframes");
        var k = new Option<int>("--k") { Description = "Frames to select (uniform rounds it to even)", DefaultValueFactory = _ => 16 };
        var output = new Option<string?>("--out") { Description = "Output folder (default: ./<video>-<sampler>-k<k>)" };
        var model = new Option<string?>("--model") { Description = "Model folder whose VGGT space-aware sampling uses" };
        var cache = new Option<string?>("--cache")
        {
            Description = "Folder caching selections by video content and sampler settings (space-aware default: ~/.cache/spatial-mllm/frame-selections; 'none' disables)",
        };

        var command = new Command("sample-frames", "Select frames of a video and write them as PNG plus a JSON of indices")
        {
            video, sampler, k, output, model, cache,
        };
        command.SetAction(parse => Run(
            parse.GetValue(video)!, parse.GetValue(sampler)!, parse.GetValue(k), parse.GetValue(output),
            parse.GetValue(model), parse.GetValue(cache), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    static int Run(string videoPath, string samplerName, int k, string? outDir, string? modelDir, string? cacheDir, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            VideoSource video = VideoSource.Open(videoPath);
            string name = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(video.Info.Path));
            outDir ??= Path.Combine(Directory.GetCurrentDirectory(), $"{name}-{samplerName}-k{k}");

            IFrameSampler sampler = CreateSampler(samplerName, k, modelDir);
            // VGGT over 128 candidates is the expensive part: cache it unless told not to.
            cacheDir ??= samplerName == "space-aware" ? SelectionCache.DefaultFolder : null;
            if (cacheDir is not null && cacheDir != "none") sampler = sampler.WithCache(cacheDir);
            using var ownedModel = sampler as IDisposable; // the space-aware sampler's VGGT, cached or not
            FrameSelection selection = sampler.Select(video);

            Directory.CreateDirectory(outDir);
            string[] pngs = selection.Indices.Select(i => Path.Combine(outDir, $"{name}_frame_{i:D6}.png")).ToArray();
            using (var frames = video.ReadFrames(selection.Indices))
                FrameWriter.WritePngs(frames, pngs);
            string json = Path.Combine(outDir, "selection.json");
            File.WriteAllText(json, JsonSerializer.Serialize(selection, new JsonSerializerOptions { WriteIndented = true }));

            stdout.WriteLine($"{selection.Sampler}: {selection.Indices.Count} of {selection.SourceFrameCount} frames [{string.Join(", ", selection.Indices)}] -> {outDir}");
            if (samplerName == "space-aware" && selection.Indices.Count < Math.Min(k, selection.SourceFrameCount))
                stdout.WriteLine($"note: space-aware sampling chose {selection.Indices.Count} frames, not --k {k}: no other frame adds a voxel " +
                                 "that the chosen ones do not already cover.");
            return 0;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or NotSupportedException or InvalidOperationException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"sample-frames: {ex.Message}");
            return 1;
        }
    }

    static IFrameSampler CreateSampler(string samplerName, int k, string? modelDir) => samplerName switch
    {
        "uniform" => FrameSampler.Uniform(k),
        "keyframes" => FrameSampler.Keyframes(k),
        "space-aware" => FrameSampler.SpaceAware(k, modelDir
            ?? throw new ArgumentException("--sampler space-aware needs --model DIR (the folder whose VGGT predicts the point maps)")),
        _ => throw new ArgumentException($"unknown sampler '{samplerName}'"),
    };
}
