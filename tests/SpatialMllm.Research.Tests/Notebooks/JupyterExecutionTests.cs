using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using SpatialMllm.Research.Tests.Display;

namespace SpatialMllm.Research.Tests.Notebooks;

/// <summary>
/// Every notebook as a Jupyter user runs it: <c>jupyter nbconvert --execute</c> (Debian's Jupyter, installed by
/// environment/prerequisites.sh) with the .NET Interactive kernel (the <c>Microsoft.dotnet-interactive</c> tool pinned
/// in .config/dotnet-tools.json, through a kernelspec of this test's own), then the executed notebook converted to
/// HTML and opened in headless Chromium, offline: every chart output must have drawn. The same cell checks as the
/// dotnet-repl test apply (errors, empty <c>// expect: output</c> cells, compiler warnings).
/// </summary>
public class JupyterExecutionTests(ITestOutputHelper log)
{
    static readonly TimeSpan NotebookTimeout = TimeSpan.FromMinutes(10);
    static readonly string NotebookFolder = Path.Combine(TestPaths.RepoRoot, "notebooks");
    static readonly Lazy<string> JupyterPath = new(WriteKernelSpec);

    [Theory]
    [MemberData(nameof(NotebookExecutionTests.Notebooks), MemberType = typeof(NotebookExecutionTests))]
    public void Notebook_runs_in_jupyter_and_every_chart_draws_offline(string notebook)
    {
        Assert.Null(NotebookExecutionTests.ToolRestoreError.Value);
        string workDir = TestPaths.NewTempDir("jupyter");
        string source = NotebookExecutionTests.NotebookForThisBuild(Path.Combine(NotebookFolder, notebook), workDir);
        var environment = new Dictionary<string, string>
        {
            ["JUPYTER_PATH"] = JupyterPath.Value, ["DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT"] = "1", ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1",
        };

        var clock = Stopwatch.StartNew();
        // The kernel starts in the notebook's folder (as in VS Code), where the relative #r line and data paths resolve.
        var (exitCode, output) = NotebookExecutionTests.RunProgram("jupyter", NotebookFolder, NotebookTimeout, environment,
            "nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.kernel_name=.net-csharp",
            $"--ExecutePreprocessor.timeout={(int)NotebookTimeout.TotalSeconds}", "--ExecutePreprocessor.allow_errors=True",
            "--output-dir", workDir, "--output", "executed.ipynb", source);
        log.WriteLine($"{notebook}: nbconvert --execute exited with {exitCode} after {clock.Elapsed.TotalSeconds:F1} s");
        string executed = Path.Combine(workDir, "executed.ipynb");
        Assert.True(exitCode == 0 && File.Exists(executed), $"{notebook}: jupyter nbconvert --execute failed ({exitCode}):\n{NotebookExecutionTests.Tail(output)}");
        var problems = NotebookExecutionTests.CellProblems(source, executed);
        Assert.True(problems.Count == 0, $"{notebook}:\n" + string.Join("\n", problems));

        int charts = Regex.Matches(File.ReadAllText(executed), "spatial-mllm-chart-message").Count;
        if (charts == 0) return;
        (exitCode, output) = NotebookExecutionTests.RunProgram("jupyter", workDir, TimeSpan.FromMinutes(2), environment,
            "nbconvert", "--to", "html", "--output", "executed.html", executed);
        Assert.True(exitCode == 0, $"{notebook}: jupyter nbconvert --to html failed ({exitCode}):\n{NotebookExecutionTests.Tail(output)}");
        string dom = ChartRenderingTests.RenderedDomOf(Path.Combine(workDir, "executed.html"));
        var notDrawn = Regex.Matches(dom, "Chart not drawn: [^<]*").Select(m => m.Value).ToList();
        Assert.True(notDrawn.Count == 0, $"{notebook}: " + string.Join("\n", notDrawn));
        Assert.Equal(charts, Regex.Matches(dom, "class=\"plot-container plotly\"").Count);
    }

    /// <summary>A kernelspec named like the notebooks' (.net-csharp) that starts the repository's pinned dotnet-interactive.</summary>
    static string WriteKernelSpec()
    {
        string root = TestPaths.NewTempDir("jupyter-path");
        string folder = Directory.CreateDirectory(Path.Combine(root, "kernels", ".net-csharp")).FullName;
        File.WriteAllText(Path.Combine(folder, "kernel.json"), JsonSerializer.Serialize(new
        {
            argv = new[] { "dotnet", "tool", "run", "dotnet-interactive", "--", "jupyter", "--default-kernel", "csharp", "{connection_file}", "--http-port-range", "2048-3000" },
            display_name = ".NET (C#)",
            language = "C#",
        }));
        return root;
    }
}
