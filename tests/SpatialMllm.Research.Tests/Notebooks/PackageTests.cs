using System.IO.Compression;
using System.Reflection;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SpatialMllm.Research.Demo;

namespace SpatialMllm.Research.Tests.Notebooks;

/// <summary>
/// The library as a user gets it: <c>build/pack.sh</c> into a fresh feed (a package version of its own, so the NuGet
/// cache never serves an older build; PackageVersion, not Version, so the repository's build output is not recompiled
/// under the other tests), then (1) a fresh console project with a PackageReference compiles and runs the
/// README's C# example, paths pointed at the tiny checkpoint and the shared scoring fixture, and (2) a notebook with
/// <c>#r "nuget: SpatialMllm.Research"</c> runs in dotnet-repl, with the package's kernel extension formatting a result.
/// </summary>
public class PackageTests : IClassFixture<PackageTests.Feed>
{
    public sealed class Feed : IDisposable
    {
        public string Folder { get; } = TestPaths.NewTempDir("feed");
        public string Version { get; } = $"0.0.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}{Random.Shared.Next(1000):000}";
        public string PackOutput { get; }
        public int PackExitCode { get; }

        public Feed() => (PackExitCode, PackOutput) = Run(TestPaths.RepoRoot, "bash", "build/pack.sh", Folder, $"-p:PackageVersion={Version}");

        /// <summary>The restored copy of this test version; every other version in the cache is left alone.</summary>
        public void Dispose()
        {
            string cached = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"), "spatialmllm.research", Version);
            if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
        }
    }

    readonly Feed feed;
    readonly ITestOutputHelper log;

    public PackageTests(ITestOutputHelper log, Feed feed)
    {
        (this.log, this.feed) = (log, feed);
        Assert.True(feed.PackExitCode == 0, "build/pack.sh failed:\n" + feed.PackOutput);
    }

    [Fact]
    public void Readme_example_runs_from_a_fresh_console_project_on_the_package()
    {
        var tiny = Samples.TinyCheckpoint(Path.Combine(TestPaths.NewTempDir("package-readme"), "tiny"));
        string code = ReadmeExample();
        foreach (var (from, to) in new[]
        {
            ("\"checkpoints/Spatial-MLLM-v1.1-Instruct-135K\"", Quoted(tiny.ModelDir)),
            ("torch.CUDA", "torch.CPU"),
            ("torch.ScalarType.BFloat16", "torch.ScalarType.Float32"),
            ("\"datasets/evaluation/vsibench/arkitscenes/41069025.mp4\"", Quoted(tiny.VideoPath)),
            ("FrameSampler.Uniform(16)", "FrameSampler.Uniform(4)"),
            ("\"results.jsonl\"", Quoted(Path.Combine(TestPaths.Shared, "fixtures", "vsibench-scoring", "vsibench-predictions-a.jsonl"))),
            ("\"datasets/evaluation/vsibench/test.jsonl\"", Quoted(Path.Combine(TestPaths.Data, "vsibench", "test.jsonl"))),
        })
        {
            Assert.True(code.Contains(from), $"the README example no longer contains {from}; update this test");
            code = code.Replace(from, to);
        }

        string project = TestPaths.NewTempDir("package-console");
        File.WriteAllText(Path.Combine(project, "Program.cs"), code);
        File.WriteAllText(Path.Combine(project, "app.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
                <RestoreAdditionalProjectSources>{feed.Folder}</RestoreAdditionalProjectSources>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="SpatialMllm.Research" Version="{feed.Version}" />
              </ItemGroup>
            </Project>
            """);
        // Outside the repository: its Directory.Build.props and central package versions must not apply.
        File.WriteAllText(Path.Combine(project, "Directory.Build.props"), "<Project />");
        File.WriteAllText(Path.Combine(project, "Directory.Packages.props"), "<Project />");

        var (exitCode, output) = Run(project, "dotnet", "run", "-c", "Release");
        log.WriteLine(output);

        Assert.True(exitCode == 0, output);
        Assert.Contains("VSI-Bench, profile spatial-mllm", output);
    }

    [Fact]
    public void Notebook_references_the_package_and_its_kernel_extension_formats_results()
    {
        string folder = TestPaths.NewTempDir("package-notebook");
        var tiny = Samples.TinyCheckpoint(Path.Combine(folder, "tiny"));
        string notebook = Path.Combine(folder, "package.ipynb"), executed = Path.Combine(folder, "executed.ipynb");
        File.WriteAllText(notebook, Notebook(
            $"#i \"nuget: {feed.Folder}\"\n#r \"nuget: SpatialMllm.Research, {feed.Version}\"",
            "using SpatialMllm.Research.Models;\nusing SpatialMllm.Research.Sampling;\nusing TorchSharp;\n"
            + $"var model = SpatialMllmModel.Load({Quoted(tiny.ModelDir)}, torch.CPU, torch.ScalarType.Float32);\nmodel",
            $"var video = model.EncodeVideo({Quoted(tiny.VideoPath)}, FrameSampler.Uniform(4));\nmodel.Answer(video, \"How many chairs?\", new AnswerOptions(MaxNewTokens: 4))"));

        // From the repository root, where the tool manifest pins dotnet-repl (the notebook uses absolute paths).
        Assert.Equal(0, Run(TestPaths.RepoRoot, "dotnet", "tool", "restore").ExitCode);
        var (exitCode, output) = Run(TestPaths.RepoRoot, "dotnet", "tool", "run", "dotnet-repl", "--",
            "--run", notebook, "--exit-after-run", "--output-path", executed);
        var problems = File.Exists(executed) ? NotebookExecutionTests.CellProblems(notebook, executed) : ["no executed notebook"];
        Assert.True(exitCode == 0 && problems.Count == 0, string.Join("\n", problems) + "\n" + output);

        string html = File.ReadAllText(executed);
        Assert.Contains("Loading extensions from", html);
        Assert.Contains("Spatial-MLLM model", html);      // LibraryViews.Of(SpatialMllmModel), through the extension
        Assert.Contains(">generated ids<", html);          // LibraryViews.Of(Answer)
    }

    /// <summary>The XML documentation ships beside the DLL, in the library's build output (which notebooks reference) and
    /// in the package (IntelliSense and hover for its users), documenting the public API.</summary>
    [Fact]
    public void Xml_documentation_is_in_the_build_output_and_the_package()
    {
        const string documented = "<member name=\"M:SpatialMllm.Research.Models.SpatialMllmModel.LogLikelihood(";
        string configuration = typeof(PackageTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
        string built = Path.Combine(TestPaths.RepoRoot, "src", "SpatialMllm.Research", "bin", configuration, "net10.0", "linux-x64", "SpatialMllm.Research.xml");
        Assert.True(File.Exists(built), $"no {built}");
        Assert.Contains(documented, File.ReadAllText(built));
        Assert.True(File.Exists(Path.ChangeExtension(typeof(SpatialMllm.Research.Models.SpatialMllmModel).Assembly.Location, ".xml")),
            "the XML documentation is not copied beside the library into a referencing project's output");

        string package = Assert.Single(Directory.GetFiles(feed.Folder, $"SpatialMllm.Research.{feed.Version}.nupkg"));
        using var zip = ZipFile.OpenRead(package);
        var entry = zip.GetEntry("lib/net10.0/SpatialMllm.Research.xml");
        Assert.True(entry is not null, "the package has no lib/net10.0/SpatialMllm.Research.xml: " + string.Join(", ", zip.Entries.Select(e => e.FullName).Where(n => n.StartsWith("lib/"))));
        using var reader = new StreamReader(entry.Open());
        Assert.Contains(documented, reader.ReadToEnd());
    }

    /// <summary>The C# block that follows "From C#" in README.md.</summary>
    static string ReadmeExample()
    {
        string readme = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "README.md"));
        var match = Regex.Match(readme, @"From C#.*?```csharp\n(.*?)```", RegexOptions.Singleline);
        Assert.True(match.Success, "README.md has no ```csharp block after \"From C#\"");
        return match.Groups[1].Value;
    }

    static string Quoted(string path) => "\"" + path.Replace("\\", "\\\\") + "\"";

    static string Notebook(params string[] cells) => new JsonObject
    {
        ["cells"] = new JsonArray(cells.Select(c => (JsonNode)new JsonObject
        {
            ["cell_type"] = "code", ["execution_count"] = null, ["outputs"] = new JsonArray(), ["source"] = c,
            ["metadata"] = new JsonObject { ["dotnet_interactive"] = new JsonObject { ["language"] = "csharp" } },
        }).ToArray()),
        ["metadata"] = new JsonObject
        {
            ["kernelspec"] = new JsonObject { ["display_name"] = ".NET (C#)", ["language"] = "C#", ["name"] = ".net-csharp" },
            ["language_info"] = new JsonObject { ["name"] = "C#" },
        },
        ["nbformat"] = 4, ["nbformat_minor"] = 5,
    }.ToJsonString();

    static (int ExitCode, string Output) Run(string workingDirectory, string program, params string[] arguments) =>
        NotebookExecutionTests.RunProgram(program, workingDirectory, TimeSpan.FromMinutes(10), new Dictionary<string, string>(), arguments);
}
