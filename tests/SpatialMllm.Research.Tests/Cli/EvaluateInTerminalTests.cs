using System.Diagnostics;
using SpatialMllm.Research.Tests.Evaluation;

namespace SpatialMllm.Research.Tests.Cli;

/// <summary>
/// <c>evaluate</c> as a person sees it: in an 80×24 tmux pane (tmux, installed by environment/prerequisites.sh, is the
/// terminal), with two workers. The pane is captured while it runs: the progress bar must stay one line (a line wider
/// than the pane would wrap, and an old redraw would leave a stack of bars), with a line per worker under it.
/// </summary>
public class EvaluateInTerminalTests
{
    [Fact]
    public void Progress_stays_one_region_in_an_80_column_tmux_pane()
    {
        var mini = new MiniVsiBench("tmux");
        string results = Path.Combine(mini.Root, "results.jsonl");
        string socket = "spatial-mllm-test-" + Guid.NewGuid().ToString("N")[..8];
        string cli = Path.Combine(AppContext.BaseDirectory, "spatial-mllm.dll");
        string command = $"dotnet '{cli}' evaluate vsibench --dry-run --dry-run-seconds 0.05 --data '{mini.Root}' --out '{results}' --workers 2; sleep 60";
        Tmux(socket, "new-session", "-d", "-s", "run", "-x", "80", "-y", "24", command);
        try
        {
            var snapshots = new List<string[]>();
            var clock = Stopwatch.StartNew();
            string metrics = Path.Combine(mini.Root, "results.metrics.json");
            while (clock.Elapsed < TimeSpan.FromMinutes(3))
            {
                snapshots.Add(Tmux(socket, "capture-pane", "-p", "-t", "run").Split('\n'));
                if (File.Exists(metrics) && snapshots[^1].Any(l => l.StartsWith("metrics:"))) break;
                Thread.Sleep(150);
            }

            Assert.Contains(snapshots[^1], l => l.StartsWith("merged 2 worker results: 40 answers"));
            foreach (var pane in snapshots)
            {
                var bars = pane.Where(l => l.Contains(" elapsed ")).ToList();
                Assert.True(bars.Count <= 1, "more than one progress line:\n" + string.Join("\n", pane));
                Assert.All(bars, bar => Assert.Matches(@"^[━─]{10,} \d+/(\d+|\?)", bar));
                Assert.All(pane, line => Assert.True(line.Length <= 80, $"{line.Length} columns: {line}"));
            }
            Assert.Contains(snapshots, pane => pane.Any(l => l.Contains("/40 ")) && pane.Any(l => l.StartsWith("  worker 0 "))
                && pane.Any(l => l.StartsWith("  worker 1 ")));
        }
        finally
        {
            Tmux(socket, "kill-server");
        }
    }

    static string Tmux(string socket, params string[] arguments)
    {
        var start = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-L");
        start.ArgumentList.Add(socket);
        foreach (string a in arguments) start.ArgumentList.Add(a);
        using var tmux = Process.Start(start) ?? throw new InvalidOperationException("tmux did not start: run environment/prerequisites.sh");
        string output = tmux.StandardOutput.ReadToEnd();
        tmux.WaitForExit();
        return output;
    }
}
