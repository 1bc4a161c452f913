using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Spectre.Console.Rendering;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// Where an evaluation stands, over one process or all <c>--workers</c>: answered of total, elapsed and remaining time,
/// and what each part is doing right now (loading the model, decoding and encoding a video, answering), rendered as
/// lines that fit a given width. <see cref="ProgressOutput"/> decides how they reach the user.
/// </summary>
internal sealed class EvaluationProgressView(int parts)
{
    readonly Part[] state = Enumerable.Range(0, parts).Select(_ => new Part()).ToArray();
    readonly Stopwatch clock = Stopwatch.StartNew();

    sealed class Part
    {
        public EvaluationProgress? Last;
        public string Activity = "starting";
    }

    /// <summary>Part <paramref name="part"/> is doing something that is not in an <see cref="EvaluationProgress"/> (e.g. loading the model).</summary>
    public void SetActivity(int part, string activity)
    {
        lock (state) state[part].Activity = activity;
    }

    public void Report(int part, EvaluationProgress progress)
    {
        lock (state)
        {
            state[part].Last = progress;
            state[part].Activity = progress.Activity
                ?? (progress.DoneBefore + progress.AnsweredNow >= progress.Total ? "done"
                    : progress.CurrentVideo is null ? "starting" : $"answering {progress.CurrentVideo}");
        }
    }

    public TimeSpan Elapsed => clock.Elapsed;

    /// <summary>What every part is doing, as one string (to notice a change).</summary>
    public string Activities()
    {
        lock (state) return string.Join("|", state.Select(p => p.Activity));
    }

    /// <summary>Answered (including earlier runs) and total over all parts; total is known once every part has reported.</summary>
    public (int Done, int? Total) Count()
    {
        lock (state)
            return (state.Sum(p => p.Last is { } l ? l.DoneBefore + l.AnsweredNow : 0),
                state.All(p => p.Last != null) ? state.Sum(p => p.Last!.Total) : null);
    }

    /// <summary>Remaining time from this run's answer rate (each unfinished part's answers over its own answering time, summed); null before the first answer.</summary>
    public TimeSpan? Remaining()
    {
        lock (state)
        {
            var (done, total) = Count();
            if (total is int all && done >= all) return TimeSpan.Zero;
            double rate = state.Sum(p => p.Last is { AnsweredNow: > 0 } l && l.Elapsed > TimeSpan.Zero && l.DoneBefore + l.AnsweredNow < l.Total
                ? l.AnsweredNow / l.Elapsed.TotalSeconds : 0);
            return total is int t && rate > 0 ? TimeSpan.FromSeconds(Math.Max(0, t - done) / rate) : null;
        }
    }

    /// <summary>
    /// The view as lines of at most <paramref name="width"/> − 1 characters (the last column stays free, so no terminal
    /// wraps a line): a bar with counts and times, then what each part is doing.
    /// </summary>
    public IReadOnlyList<string> Lines(int width)
    {
        int room = Math.Max(20, width - 1);
        var (done, total) = Count();
        string count = total is int t ? $"{done}/{t} {(t == 0 ? 100 : 100.0 * done / t),3:F0}%" : $"{done}/?";
        string elapsed = Format(Elapsed), left = Remaining() is TimeSpan r ? Format(r) : "?";
        // The longest statistics that leave room for a bar of at least 10 cells.
        string[] candidates = [$"{count}  {elapsed} elapsed  {left} left", $"{count}  {elapsed} +{left}", count];
        string stats = candidates.FirstOrDefault(c => c.Length + 11 <= room) ?? candidates[^1];
        int barWidth = room - stats.Length - 1;
        string first = barWidth >= 10 ? Bar(total is int tt && tt > 0 ? (double)done / tt : 0, barWidth) + " " + stats : stats;

        var lines = new List<string> { Fit(first, room) };
        lock (state)
        {
            if (state.Length == 1) lines.Add(Fit("  " + state[0].Activity, room));
            else
                for (int i = 0; i < state.Length; i++)
                {
                    var l = state[i].Last;
                    string part = l is null ? "" : $" {l.DoneBefore + l.AnsweredNow}/{l.Total}";
                    lines.Add(Fit($"  worker {i}{part}  {state[i].Activity}", room));
                }
        }
        return lines;
    }

    /// <summary>One line for logs: <c>progress 12/30 (40%), 0:42 elapsed, 1:03 left: answering scene0000_00</c>.</summary>
    public string PlainLine()
    {
        var (done, total) = Count();
        string count = total is int t ? $"{done}/{t} ({(t == 0 ? 100 : 100.0 * done / t):F0}%)" : $"{done}/?";
        string left = Remaining() is TimeSpan r ? Format(r) : "?";
        string activity;
        lock (state) activity = state.Length == 1 ? state[0].Activity
            : string.Join("; ", state.Select((p, i) => $"worker {i}: {p.Activity}"));
        return $"progress {count}, {Format(Elapsed)} elapsed, {left} left: {activity}";
    }

    static string Bar(double fraction, int width)
    {
        int filled = (int)Math.Round(Math.Clamp(fraction, 0, 1) * width);
        return new string('━', filled) + new string('─', width - filled);
    }

    static string Fit(string line, int width) => line.Length <= width ? line : line[..(width - 1)] + "…";

    internal static string Format(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Minutes}:{t.Seconds:00}";
}

/// <summary>
/// How the progress of an evaluation reaches the user. On a terminal: a live region of lines, redrawn in place four
/// times a second to the terminal's current width (Spectre.Console), with log lines printed above it. Piped or
/// redirected: plain lines, each stage change before the first answer and then at most one per 10 s, plus the last.
/// In a worker started by <c>--workers</c> (<c>SPATIAL_MLLM_PROGRESS=protocol</c>): one <c>@progress {json}</c> line per
/// event, which the parent reads into its combined view.
/// </summary>
internal sealed class ProgressOutput : IEvaluationDisplay
{
    public const string ProtocolVariable = "SPATIAL_MLLM_PROGRESS";
    public const string ProtocolPrefix = "@progress ";
    static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(10);

    readonly EvaluationProgressView view;
    readonly TextWriter output;
    readonly Mode mode;
    readonly IAnsiConsole? console;
    readonly Queue<string> pendingLog = new();
    readonly CancellationTokenSource stop = new();
    readonly Task? live;
    TimeSpan? lastPlain;
    string? lastActivities;
    bool answered;

    enum Mode { Live, Plain, Protocol }

    public ProgressOutput(EvaluationProgressView view, TextWriter output, bool? terminal = null)
    {
        this.view = view;
        this.output = output;
        mode = Environment.GetEnvironmentVariable(ProtocolVariable) == "protocol" ? Mode.Protocol
            : terminal ?? (ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected) ? Mode.Live : Mode.Plain;
        Log = new LineWriter(WriteLog);
        if (mode == Mode.Live)
        {
            console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
            live = Task.Run(() => console.Live(Render()).AutoClear(false).Overflow(VerticalOverflow.Ellipsis)
                .StartAsync(async context =>
                {
                    while (true)
                    {
                        FlushLog();
                        context.UpdateTarget(Render());
                        context.Refresh();
                        if (stop.IsCancellationRequested) break;
                        try { await Task.Delay(250, stop.Token); } catch (OperationCanceledException) { }
                    }
                }));
        }
    }

    /// <summary>Lines written here appear above the live region (or as they are, when not live).</summary>
    public TextWriter Log { get; }

    public void SetActivity(int part, string activity)
    {
        view.SetActivity(part, activity);
        if (mode == Mode.Protocol) output.WriteLine(ProtocolPrefix + JsonSerializer.Serialize(new ProtocolEvent(activity, null)));
        else Changed(force: false);
    }

    public void Report(int part, EvaluationProgress progress)
    {
        view.Report(part, progress);
        bool first = !answered && progress.AnsweredNow > 0;
        answered |= first;
        if (mode == Mode.Protocol) output.WriteLine(ProtocolPrefix + JsonSerializer.Serialize(new ProtocolEvent(null, progress)));
        else Changed(force: first || view.Count() is (int done, int total) && done >= total);
    }

    /// <summary>Reads a worker's output line: a progress event updates part <paramref name="part"/>, anything else is logged
    /// with the worker's tag.</summary>
    public void WorkerLine(int part, string line)
    {
        if (!line.StartsWith(ProtocolPrefix, StringComparison.Ordinal)) { Log.WriteLine($"[worker {part}] {line}"); return; }
        var e = JsonSerializer.Deserialize<ProtocolEvent>(line[ProtocolPrefix.Length..]);
        if (e?.Progress is { } p) Report(part, p);
        else if (e?.Activity is { } a) SetActivity(part, a);
    }

    sealed record ProtocolEvent(string? Activity, EvaluationProgress? Progress);

    /// <summary>Plain mode: a line when forced (the first answer, the last), for each stage before the first answer, else every 10 s.</summary>
    void Changed(bool force)
    {
        if (mode != Mode.Plain) return;
        string activities = view.Activities();
        bool stageBeforeFirstAnswer = !answered && activities != lastActivities;
        lock (output)
        {
            if (!force && !stageBeforeFirstAnswer && lastPlain is TimeSpan previous && view.Elapsed - previous < PlainInterval) return;
            lastPlain = view.Elapsed;
            lastActivities = activities;
            output.WriteLine(view.PlainLine());
        }
    }

    void WriteLog(string line)
    {
        if (mode != Mode.Live) { lock (output) output.WriteLine(line); return; }
        lock (pendingLog) pendingLog.Enqueue(line);
    }

    /// <summary>On the live thread: log lines go through Spectre's console, which prints them above the live region.</summary>
    void FlushLog()
    {
        while (true)
        {
            string line;
            lock (pendingLog) { if (!pendingLog.TryDequeue(out line!)) return; }
            console!.Write(new LogLine(line));
        }
    }

    IRenderable Render() => new Rows(view.Lines(console!.Profile.Width).Select(l => new Text(l)));

    /// <summary>Stops redrawing; the last state stays on the screen.</summary>
    public void Dispose()
    {
        if (stop.IsCancellationRequested) return;
        stop.Cancel();
        live?.Wait();
    }

    /// <summary>
    /// A log line printed above the live region. Spectre moves the cursor to the region's top line without erasing that
    /// line, so the line is erased first (in the same write), or a short log line would leave the end of the bar behind it.
    /// </summary>
    sealed class LogLine(string text) : Renderable
    {
        protected override IEnumerable<Segment> Render(RenderOptions options, int maxWidth) =>
            [Segment.Control("\u001b[2K"), .. ((IRenderable)new Text(text)).Render(options, maxWidth), Segment.LineBreak];
    }

    /// <summary>A TextWriter that hands over whole lines.</summary>
    sealed class LineWriter(Action<string> line) : TextWriter
    {
        readonly System.Text.StringBuilder current = new();

        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;

        public override void Write(char value)
        {
            lock (current)
            {
                if (value == '\n') { line(current.ToString().TrimEnd('\r')); current.Clear(); }
                else current.Append(value);
            }
        }

        public override void Write(string? value) { foreach (char c in value ?? "") Write(c); }

        public override void WriteLine(string? value) { lock (current) { Write(value); Write('\n'); } }
    }
}
