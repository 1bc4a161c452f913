using System.Collections.Concurrent;
using System.Diagnostics;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

/// <summary>
/// Issue 17's decode/encode pipeline: videos decoded ahead on worker threads while the runner answers the video before,
/// within a bound, with the same results in the same order as decoding in line, decode errors surfacing at their video,
/// and nothing left running or allocated after a cancellation; and a video's questions answered as one batch.
/// </summary>
public class DecodeAheadTests
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    static string ResultsPath(MiniVsiBench mini, string name) => Path.Combine(mini.Root, name + ".jsonl");

    /// <summary>The results file of a dry run decoding in line (made once per mini benchmark).</summary>
    static string InLineReference(MiniVsiBench mini)
    {
        string path = ResultsPath(mini, "in-line");
        if (!File.Exists(path))
            EvaluationRunner.Run(mini.Items(), new DryRunAnswerer(), path, TextWriter.Null, decodeAhead: DecodeAheadOptions.InLine);
        return path;
    }

    static Dictionary<string, string> Results(string path) => PredictionFile.Read(path).ToDictionary(p => p.Id, p => p.Text);

    [Fact]
    public void TheNextVideoDecodes_WhileThisOnesQuestionsAreAnswered()
    {
        var mini = new MiniVsiBench("ahead-overlap");
        // Each video's answers wait for the next video's decoding to start: this finishes only if the two overlap.
        using var answerer = new TracingAnswerer { AnswerWaitsForNextDecode = true };
        string results = ResultsPath(mini, "results");
        EvaluationRunner.Run(mini.Items(), answerer, results, TextWriter.Null, decodeAhead: new DecodeAheadOptions(Videos: 1, Threads: 1));

        Assert.Empty(answerer.Failures);
        int runner = Environment.CurrentManagedThreadId;
        Assert.All(answerer.Events.Where(e => e.Kind == "decode"), e => Assert.NotEqual(runner, e.Thread));
        Assert.All(answerer.Events.Where(e => e.Kind is "encode" or "answer"), e => Assert.Equal(runner, e.Thread));
        Assert.Equal(File.ReadAllText(InLineReference(mini)), File.ReadAllText(results));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 4)]
    [InlineData(3, 2)]
    public void NeverMoreThanKVideosAreDecodedAhead(int ahead, int threads)
    {
        var mini = new MiniVsiBench($"ahead-bound-{ahead}-{threads}");
        // The first video's answers wait until the workers have filled every slot they may.
        using var answerer = new TracingAnswerer { FirstAnswerWaitsForLiveDecodes = ahead };
        EvaluationRunner.Run(mini.Items(), answerer, ResultsPath(mini, "results"), TextWriter.Null, decodeAhead: new DecodeAheadOptions(ahead, threads));

        Assert.Empty(answerer.Failures);
        Assert.Equal(ahead, answerer.MostLiveDecodes);
        Assert.Equal(0, answerer.LiveDecodes);
        Assert.Equal(5, answerer.Events.Count(e => e.Kind == "decode"));
    }

    [Fact]
    public void ResultsAreTheInLineRunsByteForByte_WhateverOrderDecodingsFinishIn()
    {
        var mini = new MiniVsiBench("ahead-order");
        // Later videos decode faster, so workers finish them first.
        using var answerer = new TracingAnswerer { DecodeMilliseconds = key => 200 - 40 * mini.Items().Select(i => i.Video.Key).Distinct().Order(StringComparer.Ordinal).ToList().IndexOf(key) };
        string results = ResultsPath(mini, "results");
        var summary = EvaluationRunner.Run(mini.Items(), answerer, results, TextWriter.Null, decodeAhead: new DecodeAheadOptions(Videos: 5, Threads: 5));

        Assert.Equal(MiniVsiBench.QuestionCount, summary.Answered);
        Assert.Equal(File.ReadAllText(InLineReference(mini)), File.ReadAllText(results));
        // Each video's questions went to the answerer as one batch, in item order.
        var batches = answerer.Events.Where(e => e.Kind == "answer").ToList();
        Assert.Equal(5, batches.Count);
        Assert.Equal(mini.Items().GroupBy(i => i.Video.Key).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => (g.Key, g.Count())),
            batches.Select(b => (b.Video, b.Count)));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void AnUnreadableVideo_IsSkippedAtItsTurn_OrStopsTheRunThere(int ahead)
    {
        var mini = new MiniVsiBench($"ahead-unreadable-{ahead}");
        var reference = Results(InLineReference(mini));
        const string broken = "scannet/mini01";
        var options = new DecodeAheadOptions(ahead, 2);

        using (var skipping = new TracingAnswerer { Unreadable = broken })
        {
            string results = ResultsPath(mini, "skip");
            var log = new StringWriter();
            var summary = EvaluationRunner.Run(mini.Items(), skipping, results, log, onError: OnVideoError.Skip, decodeAhead: options);
            Assert.Equal(7, summary.Skipped.Count);
            Assert.All(summary.Skipped, q => Assert.Equal(broken, q.Video));
            Assert.Contains($"skipped {broken} (7 question(s)): {broken} is unreadable", log.ToString());
            Assert.Equal(reference.Where(r => !summary.Skipped.Any(q => q.Id == r.Key)).ToDictionary(), Results(results));
            Assert.Equal(0, skipping.LiveDecodes);
        }

        using (var stopping = new TracingAnswerer { Unreadable = broken })
        {
            string results = ResultsPath(mini, "stop");
            var e = Assert.Throws<FileNotFoundException>(() =>
                EvaluationRunner.Run(mini.Items(), stopping, results, TextWriter.Null, decodeAhead: options));
            Assert.Contains(broken, e.Message);
            // The videos before it (in key order) are answered, none after it.
            Assert.Equal(["arkitscenes/mini00", "arkitscenes/mini03"], PredictionFile.Read(results).Select(p => mini.Items().Single(i => i.Id == p.Id).Video.Key).Distinct());
            Assert.Equal(0, stopping.LiveDecodes);
            Assert.All(stopping.WorkerThreads, t => Assert.False(t.IsAlive));
        }
    }

    [Fact]
    public void Cancellation_StopsTheWorkers_DisposesWhatWasDecodedAhead_AndAResumeCompletesTheSet()
    {
        var mini = new MiniVsiBench("ahead-cancel");
        string results = ResultsPath(mini, "results");
        using var stop = new CancellationTokenSource();
        using (var first = new TracingAnswerer { FirstAnswerWaitsForLiveDecodes = 3, CancelAfterBatches = (2, stop) })
        {
            Assert.ThrowsAny<OperationCanceledException>(() =>
                EvaluationRunner.Run(mini.Items(), first, results, TextWriter.Null, cancel: stop.Token, decodeAhead: new DecodeAheadOptions(3, 2)));
            Assert.Empty(first.Failures);
            Assert.Equal(3, first.MostLiveDecodes);        // videos were waiting, decoded, when the run stopped
            Assert.Equal(0, first.LiveDecodes);            // and were disposed
            Assert.All(first.WorkerThreads, t => Assert.False(t.IsAlive));
            int decodes = first.Events.Count(e => e.Kind == "decode");
            Thread.Sleep(100);
            Assert.Equal(decodes, first.Events.Count(e => e.Kind == "decode"));
        }
        Assert.Equal(6 + 9, PredictionFile.Read(results).Count);   // the two whole batches answered before the stop

        using var second = new TracingAnswerer();
        var summary = EvaluationRunner.Run(mini.Items(), second, results, TextWriter.Null, decodeAhead: new DecodeAheadOptions(3, 2));
        Assert.Equal(MiniVsiBench.QuestionCount - 15, summary.Answered);
        Assert.Equal(Results(InLineReference(mini)), Results(results));
    }

    [Fact]
    public void Progress_CountsAWholeBatchAtOnce()
    {
        var mini = new MiniVsiBench("ahead-progress");
        var progress = new List<EvaluationProgress>();
        EvaluationRunner.Run(mini.Items(), new DryRunAnswerer(), ResultsPath(mini, "results"), TextWriter.Null, progress.Add);
        var answeredSteps = progress.Where(p => p.Activity is null && p.CurrentVideo is not null).Select(p => p.AnsweredNow).ToList();
        Assert.Equal([6, 15, 22, 32, 40], answeredSteps);
    }


    /// <summary>
    /// <see cref="DryRunAnswerer"/>'s answers, with each stage recorded (what, which video, on which thread), the decoded
    /// videos alive counted, and hooks that make the timing tests deterministic: waits on the other threads' progress
    /// (failing after <see cref="Patience"/> instead of hanging), slow decodes, an unreadable video, a cancellation.
    /// </summary>
    sealed class TracingAnswerer : IVideoAnswerer
    {
        readonly DryRunAnswerer _inner = new();
        readonly object _gate = new();
        readonly int _runner = Environment.CurrentManagedThreadId;
        readonly List<TraceEvent> _events = [];
        int _live, _batches;

        public bool AnswerWaitsForNextDecode { get; init; }
        public int FirstAnswerWaitsForLiveDecodes { get; init; }
        public Func<string, int>? DecodeMilliseconds { get; init; }
        public string? Unreadable { get; init; }
        public (int Batches, CancellationTokenSource Source)? CancelAfterBatches { get; init; }

        public ConcurrentBag<string> Failures { get; } = [];
        public ConcurrentDictionary<int, Thread> Workers { get; } = [];
        /// <summary>The threads that decoded, other than the runner's (decoding in line runs there).</summary>
        public IEnumerable<Thread> WorkerThreads => Workers.Values.Where(t => t.ManagedThreadId != _runner);
        public int MostLiveDecodes { get; private set; }
        public int LiveDecodes { get { lock (_gate) return _live; } }
        public List<TraceEvent> Events { get { lock (_gate) return [.. _events]; } }

        void Record(string kind, string video, int count = 0)
        {
            lock (_gate)
            {
                _events.Add(new TraceEvent(kind, video, Environment.CurrentManagedThreadId, count));
                Monitor.PulseAll(_gate);
            }
        }

        void WaitFor(Func<bool> condition, string what)
        {
            var clock = Stopwatch.StartNew();
            lock (_gate)
                while (!condition())
                {
                    var left = Patience - clock.Elapsed;
                    if (left <= TimeSpan.Zero) { Failures.Add($"timed out waiting for {what}"); return; }
                    Monitor.Wait(_gate, left);
                }
        }

        public IDecodedVideo Decode(BenchmarkVideo video)
        {
            Workers.TryAdd(Environment.CurrentManagedThreadId, Thread.CurrentThread);
            lock (_gate) MostLiveDecodes = Math.Max(MostLiveDecodes, ++_live);
            Record("decode", video.Key);
            bool done = false;
            try
            {
                if (DecodeMilliseconds?.Invoke(video.Key) is int ms and > 0) Thread.Sleep(ms);
                if (video.Key == Unreadable) throw new FileNotFoundException($"{video.Key} is unreadable", video.Path);
                var decoded = new Decoded(this, video.Key, _inner.Decode(video));
                done = true;
                return decoded;
            }
            finally
            {
                if (!done) Released();
            }
        }

        void Released()
        {
            lock (_gate) { _live--; Monitor.PulseAll(_gate); }
        }

        public void Dispose() { }

        sealed class Decoded(TracingAnswerer owner, string key, IDecodedVideo inner) : IDecodedVideo
        {
            public IPreparedVideo Encode()
            {
                owner.Record("encode", key);
                return new Prepared(owner, key, inner.Encode());
            }

            public void Dispose()
            {
                inner.Dispose();
                owner.Released();
            }
        }

        sealed class Prepared(TracingAnswerer owner, string key, IPreparedVideo inner) : IPreparedVideo
        {
            public IReadOnlyList<string> Answer(IReadOnlyList<string> prompts)
            {
                int batch;
                lock (owner._gate) batch = owner._batches++;
                if (owner.AnswerWaitsForNextDecode && batch < 4)
                    owner.WaitFor(() => owner._events.Count(e => e.Kind == "decode") > batch + 1, $"video {batch + 1} to decode while {key} is answered");
                if (batch == 0 && owner.FirstAnswerWaitsForLiveDecodes > 0)
                    owner.WaitFor(() => owner._live >= owner.FirstAnswerWaitsForLiveDecodes, $"{owner.FirstAnswerWaitsForLiveDecodes} videos decoded ahead");
                owner.Record("answer", key, prompts.Count);
                if (owner.CancelAfterBatches is { } cancel && batch + 1 == cancel.Batches) cancel.Source.Cancel();
                return inner.Answer(prompts);
            }

            public void Dispose() => inner.Dispose();
        }
    }

    internal sealed record TraceEvent(string Kind, string Video, int Thread, int Count);
}
