using System.ComponentModel;
using System.Diagnostics;
using FFMpegCore;

namespace SpatialMllm.Research.Video;

/// <summary>
/// Which ffmpeg and ffprobe run, and the options that differ between their versions. <c>SPATIAL_MLLM_FFMPEG</c> and
/// <c>SPATIAL_MLLM_FFPROBE</c> name the binaries (e.g. a static build carried to a machine without ffmpeg); ffprobe
/// defaults to the one beside that ffmpeg, else both come from PATH. Versions 4.x to 7.x are supported: 5.1 renamed
/// <c>-vsync</c> to <c>-fps_mode</c> (and 4.x rejects the new name), so the name is chosen from the binary's own option
/// list, once per process; git builds report no version number, so the list is asked rather than the version.
/// </summary>
internal static class FfmpegTools
{
    public const string FfmpegVariable = "SPATIAL_MLLM_FFMPEG", FfprobeVariable = "SPATIAL_MLLM_FFPROBE";

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> PassthroughTimingByBinary = new();

    /// <summary>The ffmpeg binary: <c>$SPATIAL_MLLM_FFMPEG</c>, else "ffmpeg" from PATH.</summary>
    public static string FfmpegPath => Configured(FfmpegVariable, "ffmpeg") ?? "ffmpeg";

    /// <summary>The ffprobe binary: <c>$SPATIAL_MLLM_FFPROBE</c>, else ffprobe beside a configured ffmpeg, else PATH's.</summary>
    public static string FfprobePath =>
        Configured(FfprobeVariable, "ffprobe")
        ?? (Configured(FfmpegVariable, "ffmpeg") is string ffmpeg && Path.Combine(Path.GetDirectoryName(ffmpeg)!, "ffprobe") is var beside && File.Exists(beside)
            ? beside : "ffprobe");

    /// <summary>FFMpegCore's options for calls that run ffmpeg (it looks for "ffmpeg" in the folder).</summary>
    public static FFOptions FfmpegOptions => OptionsFor(FfmpegPath);

    /// <summary>FFMpegCore's options for calls that run ffprobe.</summary>
    public static FFOptions FfprobeOptions => OptionsFor(FfprobePath);

    /// <summary>"-fps_mode passthrough" (ffmpeg 5.1 and later) or "-vsync passthrough" (older): every decoded frame
    /// comes out once, none duplicated or dropped.</summary>
    public static string PassthroughTiming => PassthroughTimingByBinary.GetOrAdd(FfmpegPath, DetectPassthroughTiming);

    static FFOptions OptionsFor(string binary) =>
        new() { BinaryFolder = Path.GetDirectoryName(binary) is { Length: > 0 } folder ? folder : "" };

    static string? Configured(string variable, string expectedName)
    {
        string? value = Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrEmpty(value)) return null;
        string full = Path.GetFullPath(value);
        if (Directory.Exists(full)) full = Path.Combine(full, expectedName);
        if (!File.Exists(full))
            throw new VideoReadException(full, $"no such file (from ${variable}); point it at the {expectedName} binary or unset it to use PATH's");
        if (Path.GetFileName(full) != expectedName)
            throw new VideoReadException(full, $"${variable} must name a file called '{expectedName}' (or its folder); link or rename it");
        return full;
    }

    static string DetectPassthroughTiming(string ffmpeg)
    {
        string help = "";
        try
        {
            var start = new ProcessStartInfo(ffmpeg, "-hide_banner -h long")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            using var process = Process.Start(start)!;
            var errors = process.StandardError.ReadToEndAsync();
            help = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            _ = errors.Result;
        }
        catch (Win32Exception) { } // not startable: the decode itself then reports it with the install hint
        return help.Contains("-fps_mode", StringComparison.Ordinal) ? "-fps_mode passthrough" : "-vsync passthrough";
    }
}
