using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace SpatialMllm.Research.Evaluation;

/// <summary>A METEOR result: the jar's corpus score and its per-sample scores; or, when it was not computed, why.</summary>
public sealed record MeteorResult(double? Score, IReadOnlyList<double> PerSample, string? NotComputedReason)
{
    public static MeteorResult NotComputed(string reason) => new(null, [], reason);
}

/// <summary>
/// METEOR as the seed's caption_eval/meteor/meteor.py (the coco-caption wrapper) computes it: the official Meteor 1.5 jar
/// run as <c>java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm</c> in the jar's folder, one
/// <c>SCORE ||| ref1 ||| … ||| hyp</c> line per sample (answered by a statistics line), then one
/// <c>EVAL ||| stats1 ||| …</c> line, answered by one score per sample and the corpus score. The seed reports the corpus
/// score (the jar aggregates the statistics; it is not the mean of the per-sample scores). There is no .NET METEOR with
/// the jar's paraphrase tables, so the jar is the only faithful route (spec §6.4).
/// </summary>
public static class Meteor
{
    /// <summary>Environment variable naming meteor-1.5.jar when no path is given on the command line.</summary>
    public const string JarVariable = "SPATIAL_MLLM_METEOR_JAR";

    /// <summary>The jar to use: <paramref name="explicitPath"/>, else $SPATIAL_MLLM_METEOR_JAR, else null.</summary>
    public static string? ResolveJar(string? explicitPath) =>
        !string.IsNullOrEmpty(explicitPath) ? explicitPath
        : Environment.GetEnvironmentVariable(JarVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : null;

    /// <summary>Scores <paramref name="samples"/> with the jar, or says why it cannot: no jar given, the jar missing, no
    /// <c>java</c> on <paramref name="searchPath"/> (default: $PATH), or the jar failing.</summary>
    internal static MeteorResult Compute(IReadOnlyList<CaptionMetrics.Sample> samples, string? jarPath, string? searchPath = null)
    {
        if (jarPath is null)
            return MeteorResult.NotComputed($"no meteor-1.5.jar given (--meteor-jar or {JarVariable})");
        if (!File.Exists(jarPath))
            return MeteorResult.NotComputed($"meteor jar not found: {jarPath}");
        string? java = FindOnPath("java", searchPath ?? Environment.GetEnvironmentVariable("PATH") ?? "");
        if (java is null)
            return MeteorResult.NotComputed("no java on PATH (Debian: apt-get install default-jre-headless)");
        if (samples.Count == 0)
            return MeteorResult.NotComputed("no questions scored");
        try { return Run(java, Path.GetFullPath(jarPath), samples); }
        catch (MeteorProtocolException e) { return MeteorResult.NotComputed(e.Message); }
        catch (System.ComponentModel.Win32Exception e) { return MeteorResult.NotComputed($"could not run {java}: {e.Message}"); }
    }

    static MeteorResult Run(string java, string jarPath, IReadOnlyList<CaptionMetrics.Sample> samples)
    {
        var start = new ProcessStartInfo(java)
        {
            WorkingDirectory = Path.GetDirectoryName(jarPath)!,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = Encoding.UTF8,
            UseShellExecute = false,
        };
        foreach (string argument in new[] { "-jar", "-Xmx2G", jarPath, "-", "-", "-stdio", "-l", "en", "-norm" })
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new MeteorProtocolException($"could not start {java}");
        var errors = new StringBuilder();
        process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (errors) errors.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        try
        {
            MeteorProtocolException Stopped()
            {
                process.WaitForExit(); // also waits for the rest of stderr
                string stderr;
                lock (errors) stderr = errors.ToString().Trim();
                return new MeteorProtocolException(
                    $"{java} -jar {jarPath} stopped answering (exit code {process.ExitCode}){(stderr.Length > 0 ? ": " + stderr : "")}");
            }
            void Send(string line)
            {
                try
                {
                    process.StandardInput.Write(line + "\n");
                    process.StandardInput.Flush();
                }
                catch (IOException) { throw Stopped(); }
            }
            string ReadLine() => process.StandardOutput.ReadLine()?.Trim() ?? throw Stopped();
            double ReadScore()
            {
                string line = ReadLine();
                return double.TryParse(line, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
                    ? value : throw new MeteorProtocolException($"{jarPath} answered '{line}' where a score was expected");
            }

            var stats = new List<string>(samples.Count);
            foreach (var sample in samples)
            {
                Send(ScoreLine(sample));
                stats.Add(ReadLine());
            }
            Send("EVAL ||| " + string.Join(" ||| ", stats));
            var perSample = new double[samples.Count];
            for (int i = 0; i < perSample.Length; i++) perSample[i] = ReadScore();
            double score = ReadScore();
            process.StandardInput.Close();
            process.WaitForExit();
            return new MeteorResult(score, perSample, null);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>The wrapper's SCORE line: references verbatim, the hypothesis without "|||" and with double spaces halved
    /// (one left-to-right pass, as Python's str.replace). Line breaks become spaces: the seed would desynchronise on them.</summary>
    internal static string ScoreLine(CaptionMetrics.Sample sample)
    {
        static string OneLine(string text) => text.Replace('\r', ' ').Replace('\n', ' ');
        string hypothesis = OneLine(sample.Hypothesis).Replace("|||", "").Replace("  ", " ");
        return string.Join(" ||| ", ["SCORE", string.Join(" ||| ", sample.References.Select(OneLine)), hypothesis]);
    }

    static string? FindOnPath(string name, string searchPath) =>
        searchPath.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    sealed class MeteorProtocolException(string message) : Exception(message);
}
