using System.Globalization;
using System.Text;
using System.Text.Json;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Runs;

/// <summary>An output (results file, training folder) another run is writing; the message names that run.</summary>
public sealed class OutputLockedException(string message) : IOException(message);

/// <summary>
/// One writer per output: an OS lock on a lock file, held for the whole run and released by the kernel when the process
/// ends however it ends, so a crash never leaves a stale lock. The lock file holds the holder's pid, host and start time,
/// which a second run reports instead of interleaving its writes with the first's. The file itself stays (deleting a lock
/// file while others may be opening it would let two runs lock different files).
/// </summary>
internal sealed class OutputLock : IDisposable
{
    readonly FileStream _stream;

    public string LockPath { get; }

    OutputLock(FileStream stream, string lockPath) => (_stream, LockPath) = (stream, lockPath);

    /// <summary>Takes the lock or throws <see cref="OutputLockedException"/> naming the run that holds it.</summary>
    /// <param name="lockPath">The lock file (created if missing).</param>
    /// <param name="command">What the holder is doing, for the other run's message (e.g. "evaluate vsibench").</param>
    /// <param name="output">What the lock guards, as the refused run's message names it.</param>
    /// <param name="advice">Why two writers would harm it and what to do instead.</param>
    public static OutputLock Acquire(string lockPath, string command, string output, string advice)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(lockPath));
        if (dir != null) Directory.CreateDirectory(dir);
        FileStream stream;
        try
        {
            // Where the OFD lock is available, the FileStream shares the file (so the holder line stays readable) and the
            // lock is taken below; elsewhere FileShare.None is the lock.
            var share = OperatingSystem.IsLinux() ? FileShare.ReadWrite | FileShare.Delete : FileShare.None;
            stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, share);
        }
        catch (IOException) when (!OperatingSystem.IsLinux()) { throw Locked(lockPath, output, advice); }

        bool? locked = PosixProcess.TryLockExclusive(stream.SafeFileHandle);
        if (locked == false)
        {
            stream.Dispose();
            throw Locked(lockPath, output, advice);
        }
        var holder = new Dictionary<string, object>
        {
            ["pid"] = Environment.ProcessId,
            ["host"] = Environment.MachineName,
            ["started"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture),
            ["command"] = command,
        };
        stream.SetLength(0);
        stream.Write(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(holder) + "\n"));
        stream.Flush(flushToDisk: true);
        return new OutputLock(stream, lockPath);
    }

    static OutputLockedException Locked(string lockPath, string output, string advice)
    {
        string holder = "another process";
        // The holder writes its line just after taking the lock: a run started at the same moment may look in between.
        for (int attempt = 0; attempt < 20 && holder == "another process"; attempt++)
        {
            if (attempt > 0) Thread.Sleep(100);
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(lockPath));
                var r = doc.RootElement;
                holder = $"pid {r.GetProperty("pid").GetInt32()} on {r.GetProperty("host").GetString()}, " +
                         $"`{r.GetProperty("command").GetString()}` started {r.GetProperty("started").GetString()}";
            }
            catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException or InvalidOperationException) { }
        }
        return new OutputLockedException($"{output} is being written by another run ({holder}; lock {lockPath}). {advice}");
    }

    /// <summary>Empties the holder line and releases the lock.</summary>
    public void Dispose()
    {
        try { _stream.SetLength(0); }
        catch (IOException) { }
        _stream.Dispose();
    }
}
