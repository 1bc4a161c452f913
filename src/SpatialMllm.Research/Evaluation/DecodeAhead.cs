using System.Runtime.ExceptionServices;

namespace SpatialMllm.Research.Evaluation;

/// <summary>How far an evaluation decodes ahead of the device.</summary>
/// <param name="Videos">At most this many videos decoding or decoded and not yet encoded (each holds its preprocessed
/// frames, ~120 MB at 16 frames of 476×644); 0: each video is decoded on the runner's thread when its turn comes.</param>
/// <param name="Threads">Videos decoded at once (ffmpeg and the resize run on the CPU).</param>
internal sealed record DecodeAheadOptions(int Videos, int Threads)
{
    /// <summary>4 videos ahead on up to 4 threads (half the cores: ffmpeg and libtorch use several each): on a 16-core
    /// GPU host this keeps a few videos ready while a video's questions are answered.</summary>
    public static DecodeAheadOptions Default { get; } = new(4, Math.Clamp(Environment.ProcessorCount / 2, 1, 4));

    /// <summary>Decoding in line, one video at a time, as before the pipeline.</summary>
    public static DecodeAheadOptions InLine { get; } = new(0, 1);

    public void Validate()
    {
        if (Videos < 0) throw new ArgumentException($"--prefetch-videos must be 0 (decode in line) or more; got {Videos}.");
        if (Threads < 1) throw new ArgumentException($"--decode-threads must be 1 or more; got {Threads}.");
    }
}

/// <summary>
/// Decodes a run's videos ahead of the runner on worker threads, in the run's order: a worker takes the next video while
/// fewer than <see cref="DecodeAheadOptions.Videos"/> are decoding or waiting (a video's slot is freed when the runner
/// disposes it, after encoding), so memory stays bounded however slow the device is. <see cref="Next"/> hands them out in
/// order; a video whose decoding failed rethrows its error there, when the runner reaches it. Dispose stops the workers
/// (a decoding in progress finishes first) and disposes what was decoded but not taken.
/// </summary>
internal sealed class DecodeAhead : IDisposable
{
    readonly IReadOnlyList<BenchmarkVideo> _videos;
    readonly Func<BenchmarkVideo, IDecodedVideo> _decode;
    readonly int _ahead;
    readonly CancellationToken _cancel;
    /// <summary>Per video: its decoded form or the error, from when a worker finishes until <see cref="Next"/> takes it.</summary>
    readonly Outcome?[] _outcomes;
    readonly List<Thread> _workers = [];
    readonly CancellationTokenRegistration _wakeOnCancel;
    readonly object _gate = new();
    int _nextToStart, _nextToTake, _released;
    bool _stopping;

    public DecodeAhead(IReadOnlyList<BenchmarkVideo> videos, Func<BenchmarkVideo, IDecodedVideo> decode, DecodeAheadOptions options,
        CancellationToken cancel = default)
    {
        options.Validate();
        (_videos, _decode, _ahead, _cancel) = (videos, decode, options.Videos, cancel);
        _outcomes = new Outcome?[videos.Count];
        _wakeOnCancel = cancel.Register(() => { lock (_gate) Monitor.PulseAll(_gate); });
        if (_ahead == 0) return;
        for (int i = 0; i < Math.Min(options.Threads, Math.Min(_ahead, videos.Count)); i++)
        {
            var worker = new Thread(Work) { IsBackground = true, Name = $"decode-ahead-{i}" };
            _workers.Add(worker);
            worker.Start();
        }
    }

    /// <summary>The next video's decoded form (waiting for it); dispose it when encoded, which frees its slot. Throws the
    /// error its decoding threw, or <see cref="OperationCanceledException"/> when the run is cancelled while waiting.</summary>
    public IDecodedVideo Next()
    {
        int index = _nextToTake;
        if (index >= _videos.Count) throw new InvalidOperationException("Every video has been taken.");
        Outcome outcome;
        if (_ahead == 0)
        {
            _nextToTake++;
            outcome = Decode(index);
        }
        else
            lock (_gate)
            {
                while (_outcomes[index] is null)
                {
                    _cancel.ThrowIfCancellationRequested();
                    Monitor.Wait(_gate);
                }
                outcome = _outcomes[index]!;
                _outcomes[index] = null;
                _nextToTake++;
            }
        if (outcome.Error is { } error)
        {
            Release();
            error.Throw();
        }
        return new Lease(this, outcome.Video!);
    }

    void Work()
    {
        while (true)
        {
            int index;
            lock (_gate)
            {
                while (!_stopping && _nextToStart < _videos.Count && _nextToStart - _released >= _ahead) Monitor.Wait(_gate);
                if (_stopping || _nextToStart >= _videos.Count) return;
                index = _nextToStart++;
            }
            var outcome = Decode(index);
            lock (_gate)
            {
                _outcomes[index] = outcome;
                Monitor.PulseAll(_gate);
            }
        }
    }

    Outcome Decode(int index)
    {
        try { return new Outcome(_decode(_videos[index]), null); }
        catch (Exception e) { return new Outcome(null, ExceptionDispatchInfo.Capture(e)); }
    }

    void Release()
    {
        lock (_gate)
        {
            _released++;
            Monitor.PulseAll(_gate);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        foreach (var worker in _workers) worker.Join();
        _wakeOnCancel.Dispose();
        foreach (var outcome in _outcomes) outcome?.Video?.Dispose();
        Array.Clear(_outcomes);
    }

    sealed record Outcome(IDecodedVideo? Video, ExceptionDispatchInfo? Error);

    /// <summary>A taken video: disposing it disposes the decoded frames and lets a worker start another video.</summary>
    sealed class Lease(DecodeAhead owner, IDecodedVideo video) : IDecodedVideo
    {
        bool _disposed;

        public IPreparedVideo Encode() => video.Encode();

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            video.Dispose();
            owner.Release();
        }
    }
}
