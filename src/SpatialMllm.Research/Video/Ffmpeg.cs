using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using FFMpegCore;
using FFMpegCore.Exceptions;
using FFMpegCore.Pipes;

namespace SpatialMllm.Research.Video;

/// <summary>
/// The ffmpeg/ffprobe calls (through FFMpegCore) that read and write frames as raw RGB24 through pipes, with the
/// binaries and version-dependent options of <see cref="FfmpegTools"/>. Every failure becomes a
/// <see cref="VideoReadException"/> that names the file and carries ffmpeg's own error output.
/// </summary>
internal static class Ffmpeg
{
    /// <summary>Stream metadata plus the frame count from a demux pass over the first video stream.</summary>
    public static VideoInfo Probe(string path)
    {
        IMediaAnalysis analysis = Run(path, "probe", () => FFProbe.Analyse(path, FfmpegTools.FfprobeOptions));
        VideoStream stream = analysis.PrimaryVideoStream
            ?? throw new VideoReadException(path, "has no video stream");

        // The container's nb_frames can be missing (mkv/webm) or wrong (truncated files); counting
        // packets only demuxes, so it is cheap and says what is really there.
        int frameCount = Run(path, "count frames",
            () => FFProbe.GetPackets(path, FfmpegTools.FfprobeOptions, customArguments: "-select_streams v:0").Packets.Count);
        if (frameCount == 0) throw new VideoReadException(path, "contains no video frames");

        if (stream.Width is not int codedWidth || stream.Height is not int codedHeight)
            throw new VideoReadException(path, "video stream has no frame size");
        // ffmpeg applies the rotation metadata when decoding (autorotate), so a ±90° video comes out transposed.
        bool transposed = Math.Abs(stream.Rotation) % 180 == 90;
        return new VideoInfo(
            Path: path,
            FrameCount: frameCount,
            Width: transposed ? codedHeight : codedWidth,
            Height: transposed ? codedWidth : codedHeight,
            FramesPerSecond: stream.AverageFrameRate,
            Duration: analysis.Duration,
            Rotation: stream.Rotation);
    }

    /// <summary>
    /// Decodes the frames numbered <paramref name="sortedIndices"/> (ascending, unique) in one pass: a
    /// select filter on the decoded frame number n, passthrough timing so that no frame is duplicated or
    /// dropped (variable frame rate), raw rgb24 into a pipe. Returns T·H·W·3 bytes.
    /// </summary>
    public static byte[] DecodeFrames(string path, int[] sortedIndices, int width, int height)
    {
        string select = string.Join('+', sortedIndices.Select(i => $"eq(n\\,{i.ToString(CultureInfo.InvariantCulture)})"));
        var sink = new ExactSizeSink(path, sortedIndices.Length, width, height);
        string arguments = FFMpegArguments
            .FromFileInput(path)
            .OutputToFile(StandardOutput, overwrite: false, o => o
                .WithCustomArgument("-map 0:v:0")
                .WithVideoFilters(f => f.WithCustomFilter($"select={select}"))
                .WithCustomArgument(FfmpegTools.PassthroughTiming)
                .WithFrameCount(sortedIndices.Length) // stop decoding after the last wanted frame
                .WithPixelFormat("rgb24")
                .ForceFormat("rawvideo"))
            .Arguments;
        RunToSink(path, "decode", arguments, sink);
        return sink.Result(what: $"frames [{string.Join(", ", sortedIndices)}]");
    }

    /// <summary>Decodes PNG files, all of one size, in one ffmpeg pass (the png_pipe demuxer splits the concatenated files).</summary>
    public static byte[] DecodePngs(string folder, IReadOnlyList<string> files, int width, int height)
    {
        var sink = new ExactSizeSink(folder, files.Count, width, height);
        string arguments = FFMpegArguments
            .FromFileInput(StandardInput, verifyExists: false, o => o.ForceFormat("png_pipe"))
            .OutputToFile(StandardOutput, overwrite: false, o => o
                .WithCustomArgument(FfmpegTools.PassthroughTiming)
                .WithPixelFormat("rgb24")
                .ForceFormat("rawvideo"))
            .Arguments;
        RunToSink(folder, "decode PNG frames", arguments, sink, async stdin =>
        {
            foreach (string file in files)
            {
                await using var input = File.OpenRead(file);
                await input.CopyToAsync(stdin).ConfigureAwait(false);
            }
        });
        return sink.Result(what: string.Join(", ", files.Select(Path.GetFileName)));
    }

    /// <summary>Encodes rgb24 frames (each width·height·3 bytes) as PNG files at <paramref name="paths"/>.</summary>
    public static void WritePngs(IReadOnlyList<byte[]> rgbFrames, int width, int height, IReadOnlyList<string> paths)
    {
        if (rgbFrames.Count != paths.Count) throw new ArgumentException("one path per frame is needed", nameof(paths));
        if (paths.Count == 0) return;
        // image2 numbers its outputs; write under a private pattern beside the targets, then rename.
        string folder = Path.GetDirectoryName(Path.GetFullPath(paths[0]))!;
        string pattern = Path.Combine(folder, $".frames-{Guid.NewGuid():N}-%06d.png");
        var source = new RawVideoPipeSource(rgbFrames.Select(bytes => (IVideoFrame)new Rgb24Frame(bytes, width, height)));
        Run(paths[0], "encode PNG", () => FFMpegArguments
            .FromPipeInput(source)
            .OutputToFile(pattern, overwrite: true, o => o
                .WithVideoCodec("png")
                .WithPixelFormat("rgb24")
                .WithCustomArgument(FfmpegTools.PassthroughTiming)
                .WithCustomArgument("-start_number 0")
                .ForceFormat("image2"))
            .ProcessSynchronously(throwOnError: true, FfmpegTools.FfmpegOptions));
        for (int i = 0; i < paths.Count; i++)
            File.Move(pattern.Replace("%06d", i.ToString("D6", CultureInfo.InvariantCulture)), paths[i], overwrite: true);
    }

    /// <summary>
    /// Encodes rgb24 frames (each width·height·3 bytes, pulled one at a time, so they need not all be in memory) as an
    /// H.264 mp4 (yuv420p, CRF <paramref name="crf"/>; width and height must be even) at <paramref name="path"/>,
    /// written beside it first and renamed, so a reader never sees half a file.
    /// </summary>
    public static void WriteMp4(IEnumerable<byte[]> rgbFrames, int width, int height, double framesPerSecond, string path, int crf = 12)
    {
        if (width % 2 != 0 || height % 2 != 0) throw new ArgumentException($"{path}: an H.264 yuv420p video needs an even width and height, not {width}x{height}");
        string fullPath = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
        string partial = Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileNameWithoutExtension(fullPath)}-{Guid.NewGuid():N}.partial.mp4");
        var source = new RawVideoPipeSource(rgbFrames.Select(bytes => (IVideoFrame)new Rgb24Frame(bytes, width, height))) { FrameRate = framesPerSecond };
        try
        {
            Run(fullPath, "encode mp4", () => FFMpegArguments
                .FromPipeInput(source)
                .OutputToFile(partial, overwrite: true, o => o
                    .WithVideoCodec("libx264")
                    .WithConstantRateFactor(crf)
                    .WithPixelFormat("yuv420p")
                    .WithCustomArgument("-movflags +faststart"))
                .ProcessSynchronously(throwOnError: true, FfmpegTools.FfmpegOptions));
            File.Move(partial, fullPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(partial)) File.Delete(partial);
        }
    }

    const string StandardInput = "pipe:0", StandardOutput = "pipe:1";

    /// <summary>
    /// Runs ffmpeg with arguments FFMpegCore built, feeding stdin (when given) and reading stdout to its end into
    /// <paramref name="sink"/>. FFMpegCore's own output pipe is not used for reading: when ffmpeg exits quickly, its
    /// cancellation can end the pipe's connection wait before the data has been read, and frames went missing under load.
    /// </summary>
    static void RunToSink(string path, string what, string arguments, ExactSizeSink sink, Func<Stream, Task>? feedStdin = null)
    {
        string ffmpeg = FfmpegTools.FfmpegPath;
        var start = new ProcessStartInfo(ffmpeg, "-hide_banner -loglevel error " + arguments)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = feedStdin != null, UseShellExecute = false,
        };
        Process process;
        try { process = Process.Start(start) ?? throw new Win32Exception("no process"); }
        catch (Win32Exception ex)
        {
            throw new VideoReadException(path, $"cannot {what}: {ffmpeg} could not be started ({ex.Message}); install ffmpeg " +
                                               $"(apt-get install -y ffmpeg) or set {FfmpegTools.FfmpegVariable} to an ffmpeg binary", ex);
        }
        using (process)
        {
            var errors = process.StandardError.ReadToEndAsync();
            IOException? feedError = null;
            var feeding = feedStdin is null ? Task.CompletedTask : Task.Run(async () =>
            {
                // ffmpeg may stop reading early (an error): the broken pipe is then a symptom, and ffmpeg's exit code and
                // stderr, checked below, say what went wrong.
                try { await feedStdin(process.StandardInput.BaseStream).ConfigureAwait(false); }
                catch (IOException e) { feedError = e; }
                try { process.StandardInput.Close(); }
                catch (IOException e) { feedError ??= e; }
            });
            sink.ReadAllAsync(process.StandardOutput.BaseStream).GetAwaiter().GetResult();
            process.WaitForExit();
            feeding.GetAwaiter().GetResult();
            string stderr = errors.Result;
            if (process.ExitCode != 0)
                throw new VideoReadException(path, $"cannot {what}: ffmpeg exited with code {process.ExitCode}: {FirstLines(stderr)}");
            if (feedError != null)
                throw new VideoReadException(path, $"cannot {what}: ffmpeg stopped reading its input ({feedError.Message}){(stderr.Length > 0 ? ": " + FirstLines(stderr) : "")}", feedError);
            sink.Stderr = stderr;
        }
    }

    static T Run<T>(string path, string what, Func<T> call)
    {
        try
        {
            return call();
        }
        catch (Win32Exception ex)
        {
            throw new VideoReadException(path,
                $"cannot {what}: ffmpeg/ffprobe could not be started ({ex.Message}); install ffmpeg (apt-get install -y ffmpeg) " +
                $"or set {FfmpegTools.FfmpegVariable} (and {FfmpegTools.FfprobeVariable}) to the binaries", ex);
        }
        catch (Exception ex) when (ex is FFMpegException or FFProbeException or System.Text.Json.JsonException)
        {
            throw new VideoReadException(path, $"cannot {what}: {FirstLines(ex.Message)}", ex);
        }
    }

    static string FirstLines(string message) =>
        string.Join(" | ", message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Take(6));

    /// <summary>Reads the pipe into a buffer of exactly the expected size and reports any shortfall or excess.</summary>
    sealed class ExactSizeSink(string path, int frames, int width, int height)
    {
        readonly long frameBytes = (long)width * height * 3;
        readonly byte[] buffer = AllocateFor(path, (long)frames * width * height * 3);
        long received;

        /// <summary>What ffmpeg printed on a successful exit (warnings), for the message when frames are missing.</summary>
        public string Stderr { get; set; } = "";

        /// <summary>Reads to end of stream (ffmpeg's exit closes the writing end).</summary>
        public async Task ReadAllAsync(Stream pipe)
        {
            byte[] overflow = new byte[1 << 16];
            while (true)
            {
                Memory<byte> target = received < buffer.Length ? buffer.AsMemory((int)received) : overflow;
                int n = await pipe.ReadAsync(target).ConfigureAwait(false);
                if (n == 0) return;
                received += n;
            }
        }

        public byte[] Result(string what)
        {
            if (received != buffer.Length)
                throw new VideoReadException(path,
                    $"ffmpeg returned {received / (double)frameBytes:0.##} of the {frames} frames asked for ({what}); " +
                    "the file is probably truncated or corrupt" + (Stderr.Trim().Length > 0 ? $"; ffmpeg said: {FirstLines(Stderr)}" : ""));
            return buffer;
        }

        static byte[] AllocateFor(string path, long bytes) => bytes <= Array.MaxLength
            ? new byte[bytes]
            : throw new VideoReadException(path, $"{bytes} bytes of frames do not fit one buffer; read fewer frames at a time");
    }

    sealed class Rgb24Frame(byte[] bytes, int width, int height) : IVideoFrame
    {
        public int Width => width;
        public int Height => height;
        public string PixelFormat => "rgb24";
        public void Serialize(Stream pipe) => pipe.Write(bytes);
        public Task SerializeAsync(Stream pipe, CancellationToken token) => pipe.WriteAsync(bytes, token).AsTask();
    }
}
