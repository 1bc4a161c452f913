using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

/// <summary>METEOR through the jar's stdio protocol, checked against a fake <c>java</c> (a bash script) that speaks it, and
/// the reasons the table gives when METEOR cannot be computed.</summary>
public class ScanQaMeteorTests
{
    static CaptionMetrics.Sample S(string hypothesis, params string[] references) => new(hypothesis, references);

    /// <summary>A folder with an executable <c>java</c> running <paramref name="body"/>, and an empty meteor-1.5.jar in a
    /// folder of its own; returns (the folder to search for java, the jar).</summary>
    static (string SearchPath, string Jar) FakeJava(string body)
    {
        string bin = TestPaths.NewTempDir("fake-java");
        string java = Path.Combine(bin, "java");
        File.WriteAllText(java, "#!/bin/bash\n" + body);
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(java, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string jar = Path.Combine(TestPaths.NewTempDir("fake-meteor"), "meteor-1.5.jar");
        File.WriteAllText(jar, "");
        return (bin, jar);
    }

    /// <summary>Checks the seed's command line and working folder, logs every input line to input.log beside the jar, answers
    /// a SCORE line with "{references} {hypothesis words}", and an EVAL line with words/10 per sample, then the total
    /// words/100 as the corpus score (deliberately not the mean of the per-sample scores).</summary>
    const string SpeaksMeteor = """
        [ "$*" = "-jar -Xmx2G $3 - - -stdio -l en -norm" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
        [ "$PWD" = "$(dirname "$3")" ] || { echo "unexpected working folder $PWD" >&2; exit 3; }
        while IFS= read -r line; do
          printf '%s\n' "$line" >> input.log
          case "$line" in
            "SCORE |||"*) awk -F' [|][|][|] ' '{ n = split($NF, w, " "); printf "%d %d\n", NF - 2, n }' <<< "$line" ;;
            "EVAL |||"*) awk -F' [|][|][|] ' '{ t = 0; for (i = 2; i <= NF; i++) { split($i, a, " "); printf "%.4f\n", a[2] / 10; t += a[2] } printf "%.4f\n", t / 100 }' <<< "$line" ;;
            *) echo "unknown command: $line" >&2; exit 4 ;;
          esac
        done
        """;

    [Fact]
    public void Compute_SpeaksTheStdioProtocol_AndReportsTheCorpusScore()
    {
        var (searchPath, jar) = FakeJava(SpeaksMeteor);
        // "a  b|||c" → "|||" removed → "a  bc" → double space halved → "a bc" (2 words); "one two three" has 3.
        var result = Meteor.Compute([S("a  b|||c", "red chair", "the chair"), S("one two three", "x")], jar, searchPath);

        Assert.Null(result.NotComputedReason);
        Assert.Equal([0.2, 0.3], result.PerSample);
        Assert.Equal(0.05, result.Score);
        Assert.Equal(
            ["SCORE ||| red chair ||| the chair ||| a bc", "SCORE ||| x ||| one two three", "EVAL ||| 2 2 ||| 1 3"],
            File.ReadAllLines(Path.Combine(Path.GetDirectoryName(jar)!, "input.log")));
    }

    [Fact]
    public void Compute_JarThatFails_SaysWhy()
    {
        var (searchPath, jar) = FakeJava("echo 'Error: Unable to access jarfile' >&2; exit 1\n");
        var result = Meteor.Compute([S("a", "a")], jar, searchPath);
        Assert.Null(result.Score);
        Assert.Contains("stopped answering (exit code 1)", result.NotComputedReason);
        Assert.Contains("Unable to access jarfile", result.NotComputedReason);
    }

    [Fact]
    public void Compute_NotComputed_NamesTheReason()
    {
        var (_, jar) = FakeJava("exit 0\n");
        string noJava = TestPaths.NewTempDir("no-java");
        Assert.Equal($"no meteor-1.5.jar given (--meteor-jar or {Meteor.JarVariable})", Meteor.Compute([S("a", "a")], null).NotComputedReason);
        Assert.Equal("meteor jar not found: /nonexistent/meteor-1.5.jar", Meteor.Compute([S("a", "a")], "/nonexistent/meteor-1.5.jar").NotComputedReason);
        Assert.Equal("no java on PATH (Debian: apt-get install default-jre-headless)", Meteor.Compute([S("a", "a")], jar, noJava).NotComputedReason);
    }


}
