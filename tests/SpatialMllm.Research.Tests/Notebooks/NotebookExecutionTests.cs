using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace SpatialMllm.Research.Tests.Notebooks;

/// <summary>
/// Runs every notebook in <c>notebooks/</c> top to bottom in the real notebook kernel: dotnet-repl, the local tool
/// pinned in .config/dotnet-tools.json, built on the same .NET Interactive as VS Code's kernel (an in-process
/// harness would load this test's assemblies instead, e.g. another FSharp.Core). A notebook fails on any cell error,
/// and on an empty output from a cell that contains the line <c>// expect: output</c> (charts and tables; by
/// convention the cell's last line, so that tools which name cells by their first line, like dotnet-repl's TRX, show code).
/// </summary>
public class NotebookExecutionTests(ITestOutputHelper log)
{
    public const string ExpectOutputMarker = "// expect: output";
    static readonly TimeSpan NotebookTimeout = TimeSpan.FromMinutes(5);
    static readonly string NotebookFolder = Path.Combine(TestPaths.RepoRoot, "notebooks");
    internal static readonly Lazy<string?> ToolRestoreError = new(RestoreTools);

    public static TheoryData<string> Notebooks() =>
        new(Directory.GetFiles(NotebookFolder, "*.ipynb").Select(Path.GetFileName).Order().ToArray()!);

    [Theory]
    [MemberData(nameof(Notebooks))]
    public void Notebook_runs_top_to_bottom_without_cell_errors(string notebook)
    {
        Assert.Null(ToolRestoreError.Value);
        string workDir = TestPaths.NewTempDir("notebook");
        string source = NotebookForThisBuild(Path.Combine(NotebookFolder, notebook), workDir);
        string executed = Path.Combine(workDir, "executed.ipynb");

        var clock = Stopwatch.StartNew();
        // The kernel resolves relative paths (the #r line, data files) against its working directory, which VS Code
        // sets to the notebook's folder; so does this.
        var (exitCode, consoleOutput) = Run(NotebookFolder, NotebookTimeout,
            "tool", "run", "dotnet-repl", "--", "--run", source, "--exit-after-run", "--output-path", executed);
        log.WriteLine($"{notebook}: dotnet-repl exited with {exitCode} after {clock.Elapsed.TotalSeconds:F1} s");

        Assert.True(File.Exists(executed), $"{notebook}: dotnet-repl wrote no executed notebook (exit code {exitCode}):\n{Tail(consoleOutput)}");
        var problems = CellProblems(source, executed);
        Assert.True(problems.Count == 0, $"{notebook}:\n" + string.Join("\n", problems));
        Assert.True(exitCode == 0, $"{notebook}: dotnet-repl exit code {exitCode}:\n{Tail(consoleOutput)}");
    }

    /// <summary>
    /// Notebooks reference the Release build. Another configuration's test run executes a copy that references its
    /// own build instead, so the check never runs against a stale or missing Release build.
    /// </summary>
    internal static string NotebookForThisBuild(string notebook, string workDir)
    {
        string configuration = typeof(NotebookExecutionTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
        if (configuration == "Release") return notebook;
        string copy = Path.Combine(workDir, Path.GetFileName(notebook));
        File.WriteAllText(copy, File.ReadAllText(notebook).Replace("/bin/Release/", $"/bin/{configuration}/"));
        return copy;
    }

    /// <summary>One line per failed cell, per <c>// expect: output</c> cell without visible output, and per compiler warning shown.</summary>
    internal static List<string> CellProblems(string sourcePath, string executedPath)
    {
        var sourceCells = CodeCells(sourcePath);
        var executedCells = CodeCells(executedPath);
        if (sourceCells.Count != executedCells.Count)
            return [$"the notebook has {sourceCells.Count} code cells, the executed copy {executedCells.Count}"];

        var problems = new List<string>();
        for (int i = 0; i < executedCells.Count; i++)
        {
            string source = sourceCells[i].Source;
            string where = $"code cell {i + 1} ({FirstCodeLine(source)})";
            var outputs = executedCells[i].Outputs;
            foreach (var error in outputs.Where(o => o.GetProperty("output_type").GetString() == "error"))
                problems.Add($"{where}: {error.GetProperty("ename").GetString()}: {error.GetProperty("evalue").GetString()}");
            if (source.Contains(ExpectOutputMarker) && !outputs.Any(HasVisibleData))
                problems.Add($"{where}: expected output, got none");
            // A compiler warning is printed as an output box above the cell's result: a reader sees it as a problem.
            // CS1701/CS1702 (assembly unification: TorchSharp built against System.Runtime.Numerics 8.0, the kernel runs
            // 10.0) are the ones every SDK project suppresses by default; some kernels' scripting compiler does not.
            foreach (var warning in outputs.SelectMany(OutputTexts).SelectMany(t => Regex.Matches(t, @"warning CS(?!170[12])\d{4}[^\n<]*")).Select(m => m.Value).Distinct())
                problems.Add($"{where}: {warning}");
        }
        return problems;
    }

    static List<(string Source, List<JsonElement> Outputs)> CodeCells(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.GetProperty("cells").EnumerateArray()
            .Where(cell => cell.GetProperty("cell_type").GetString() == "code")
            .Select(cell => (Text(cell.GetProperty("source")),
                cell.TryGetProperty("outputs", out var outputs) ? outputs.EnumerateArray().Select(o => o.Clone()).ToList() : []))
            .ToList();
    }

    /// <summary>A display or result output with some non-blank representation (HTML, plain text, ...).</summary>
    static bool HasVisibleData(JsonElement output) =>
        output.TryGetProperty("data", out var data)
        && data.EnumerateObject().Any(representation => !string.IsNullOrWhiteSpace(Text(representation.Value)));

    static IEnumerable<string> OutputTexts(JsonElement output) =>
        (output.TryGetProperty("data", out var data) ? data.EnumerateObject().Select(r => Text(r.Value)) : [])
        .Concat(output.TryGetProperty("text", out var text) ? [Text(text)] : []);

    /// <summary>Jupyter stores multi-line text as a string or as an array of lines.</summary>
    static string Text(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.Array => string.Concat(value.EnumerateArray().Select(line => line.GetString())),
        _ => value.GetRawText(),
    };

    static string FirstCodeLine(string source) =>
        source.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0 && !l.StartsWith("//")) ?? "";

    static string? RestoreTools()
    {
        var (exitCode, output) = Run(TestPaths.RepoRoot, TimeSpan.FromMinutes(5), "tool", "restore");
        return exitCode == 0 ? null : $"dotnet tool restore failed ({exitCode}):\n{Tail(output)}";
    }

    static (int ExitCode, string Output) Run(string workingDirectory, TimeSpan timeout, params string[] arguments) =>
        RunProgram("dotnet", workingDirectory, timeout, new Dictionary<string, string>(), arguments);

    internal static (int ExitCode, string Output) RunProgram(string program, string workingDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment = { ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1", ["DOTNET_NOLOGO"] = "1" },
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        foreach (var (name, value) in environment) start.Environment[name] = value;

        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout.TotalMinutes} min\n{output}");
        }
        process.WaitForExit(); // drains the redirected streams
        return (process.ExitCode, output.ToString());
    }

    internal static string Tail(string text, int lines = 40) => string.Join("\n", text.Split('\n').TakeLast(lines));
}
