using System.Text.RegularExpressions;

namespace SpatialMllm.Research.Tests;

/// <summary>
/// Dependencies point one way: the command line on the library, the library on nothing of the command line or of the
/// notebooks' helpers, and no cycle between the library's folders (namespaces), counting both <c>using</c> lines and a
/// child namespace's use of its parent's types, which needs none.
/// </summary>
public partial class DependencyTests
{
    sealed record SourceFile(string Path, string Namespace, string Code, IReadOnlyList<string> Usings);

    static List<SourceFile> Sources(string project) =>
        [.. Directory.EnumerateFiles(Path.Combine(TestPaths.RepoRoot, "src", project), "*.cs", SearchOption.AllDirectories)
            .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !p.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .Select(p => (Path: p, Text: File.ReadAllText(p)))
            .Where(f => NamespaceLine().IsMatch(f.Text))
            .Select(f => new SourceFile(f.Path, NamespaceLine().Match(f.Text).Groups[1].Value, CommentLine().Replace(f.Text, ""),
                [.. UsingLine().Matches(f.Text).Select(m => m.Groups[1].Value)]))];

    [Fact]
    public void The_librarys_namespaces_form_no_cycle()
    {
        var files = Sources("SpatialMllm.Research");
        var declared = files.GroupBy(f => f.Namespace)
            .ToDictionary(g => g.Key, g => g.SelectMany(f => TypeDeclaration().Matches(f.Code).Select(m => m.Groups[1].Value)).ToHashSet());
        var edges = new Dictionary<string, HashSet<string>>();
        foreach (var file in files)
        {
            var to = edges.TryGetValue(file.Namespace, out var set) ? set : edges[file.Namespace] = [];
            foreach (string u in file.Usings.Where(u => u.StartsWith("SpatialMllm.Research", StringComparison.Ordinal) && u != file.Namespace)) to.Add(u);
            for (string parent = ParentOf(file.Namespace); parent.Contains('.'); parent = ParentOf(parent))
                if (declared.TryGetValue(parent, out var types) && types.Any(t => Regex.IsMatch(file.Code, $@"\b{t}\b"))) to.Add(parent);
        }
        var cycles = edges.Keys.Select(start => CycleFrom(start, edges)).OfType<string>().Distinct().ToList();
        Assert.True(cycles.Count == 0, "cycles between namespaces:\n" + string.Join("\n", cycles));
    }

    [Fact]
    public void The_library_uses_nothing_of_the_command_line_and_the_command_line_nothing_of_the_notebook_helpers()
    {
        var wrong = Sources("SpatialMllm.Research")
            .Where(f => f.Namespace != "SpatialMllm.Research.Notebooks")
            .SelectMany(f => f.Usings.Where(u => u.StartsWith("SpatialMllm.Cli", StringComparison.Ordinal) || u == "SpatialMllm.Research.Notebooks")
                .Select(u => $"{f.Path}: using {u}"))
            .Concat(Sources("SpatialMllm.Cli").SelectMany(f => f.Usings.Where(u => u == "SpatialMllm.Research.Notebooks").Select(u => $"{f.Path}: using {u}")))
            .ToList();
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    static string ParentOf(string ns) => ns.Contains('.') ? ns[..ns.LastIndexOf('.')] : "";

    /// <summary>A path from <paramref name="start"/> back to itself, as "A → B → A", or null.</summary>
    static string? CycleFrom(string start, Dictionary<string, HashSet<string>> edges)
    {
        var queue = new Queue<List<string>>([[start]]);
        var seen = new HashSet<string>();
        while (queue.Count > 0)
        {
            var path = queue.Dequeue();
            foreach (string next in edges.GetValueOrDefault(path[^1], []))
            {
                if (next == start) return string.Join(" → ", [.. path, start]);
                if (seen.Add(next)) queue.Enqueue([.. path, next]);
            }
        }
        return null;
    }

    [GeneratedRegex(@"^namespace ([\w.]+);", RegexOptions.Multiline)]
    private static partial Regex NamespaceLine();

    [GeneratedRegex(@"^using (?:static )?([\w.]+);", RegexOptions.Multiline)]
    private static partial Regex UsingLine();

    [GeneratedRegex(@"//.*$", RegexOptions.Multiline)]
    private static partial Regex CommentLine();

    [GeneratedRegex(@"^(?:public|internal)\b[\w\s]*?\b(?:class|record|struct|interface|enum)\s+(\w+)", RegexOptions.Multiline)]
    private static partial Regex TypeDeclaration();
}
