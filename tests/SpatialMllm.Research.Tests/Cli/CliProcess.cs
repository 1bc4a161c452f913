using System.Diagnostics;

namespace SpatialMllm.Research.Tests.Cli;

/// <summary>The built CLI as a real process (for kills, signals and races that an in-process call cannot show).</summary>
internal static class CliProcess
{
    static string CliDll => Path.Combine(AppContext.BaseDirectory, "spatial-mllm.dll");

    public static Process Start(string workingDirectory, params string[] args) => Start(workingDirectory, null, args);

    public static Process Start(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        start.ArgumentList.Add(CliDll);
        foreach (string a in args) start.ArgumentList.Add(a);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        return Process.Start(start)!;
    }

    /// <summary>Waits for exit, reading both streams to the end (so a full pipe never blocks the child).</summary>
    public static (int Code, string Output, string Error) Finish(Process process, TimeSpan? timeout = null)
    {
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("the CLI did not finish: " + error.Result);
        }
        return (process.ExitCode, output.Result, error.Result);
    }

    /// <summary>Complete lines in a file another process may be appending to.</summary>
    public static int CountLines(string path)
    {
        if (!File.Exists(path)) return 0;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int n = 0, b;
        while ((b = stream.ReadByte()) >= 0) if (b == '\n') n++;
        return n;
    }

    /// <summary>Polls until <paramref name="condition"/> holds; fails with <paramref name="what"/> after <paramref name="timeout"/>
    /// or when <paramref name="process"/> exits first.</summary>
    public static void WaitFor(Func<bool> condition, string what, Process? process = null, double timeoutSeconds = 120)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (process is { HasExited: true })
                Assert.Fail($"the process exited ({process.ExitCode}) before {what}: {process.StandardError.ReadToEnd()}");
            if (clock.Elapsed.TotalSeconds > timeoutSeconds) Assert.Fail($"timed out waiting for {what}");
            Thread.Sleep(20);
        }
    }

    /// <summary>True when the process is gone (or a zombie no one has reaped yet: it runs no more code).</summary>
    public static bool IsGone(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return true; }
    }
}
