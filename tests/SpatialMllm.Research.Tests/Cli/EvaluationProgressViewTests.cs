using SpatialMllm.Cli.Commands;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Cli;

public class EvaluationProgressViewTests
{
    [Theory]
    [InlineData(80)]
    [InlineData(40)]
    [InlineData(200)]
    public void Every_line_fits_the_terminal_width(int width)
    {
        var view = new EvaluationProgressView(parts: 3);
        view.SetActivity(0, "loading model /data/checkpoints/Spatial-MLLM-v1.1-Instruct-135K-with-a-long-folder-name");
        view.Report(1, new EvaluationProgress(120, 3000, 5130, TimeSpan.FromMinutes(75), "scene0011_00"));
        view.Report(2, new EvaluationProgress(0, 0, 5130, TimeSpan.FromSeconds(3), "41069025", "decoding and encoding video 41069025"));

        var lines = view.Lines(width);

        Assert.Equal(4, lines.Count);
        Assert.All(lines, line => Assert.True(line.Length < width, $"{line.Length} ≥ {width}: {line}"));
        Assert.Contains("worker 0", lines[1]);
        Assert.StartsWith("  worker 2 0/5130  decoding", lines[3]);
    }

    [Fact]
    public void Shows_counts_elapsed_and_remaining_time_and_the_current_stage()
    {
        var view = new EvaluationProgressView(parts: 1);
        view.SetActivity(0, "loading model checkpoints/tiny");
        Assert.Equal("  loading model checkpoints/tiny", view.Lines(80)[1]);
        Assert.Null(view.Remaining());

        view.Report(0, new EvaluationProgress(10, 5, 45, TimeSpan.FromSeconds(20), "scene0000_00"));

        var lines = view.Lines(80);
        Assert.Matches(@"^━+─+ 15/45  33%  \d+:\d\d elapsed  1:00 left$", lines[0]); // 30 to go at 0.5 answers/s
        Assert.Equal(79, lines[0].Length);
        Assert.Equal("  answering scene0000_00", lines[1]);
        Assert.Equal(TimeSpan.FromSeconds(60), view.Remaining());
        Assert.Matches(@"^progress 15/45 \(33%\), \d+:\d\d elapsed, 1:00 left: answering scene0000_00$", view.PlainLine());
    }

    [Fact]
    public void Workers_add_up_to_one_total_and_one_rate()
    {
        var view = new EvaluationProgressView(parts: 2);
        view.Report(0, new EvaluationProgress(10, 0, 50, TimeSpan.FromSeconds(10), "a"));
        Assert.Equal((10, (int?)null), view.Count()); // worker 1 has not said its total yet

        view.Report(1, new EvaluationProgress(20, 0, 50, TimeSpan.FromSeconds(10), "b"));

        Assert.Equal((30, (int?)100), view.Count());
        Assert.Equal(TimeSpan.FromSeconds(70 / 3.0), view.Remaining()); // 1 + 2 answers/s
    }

    [Fact]
    public void Plain_output_names_each_stage_before_the_first_answer_then_throttles()
    {
        var text = new StringWriter();
        using (var output = new ProgressOutput(new EvaluationProgressView(parts: 1), text, terminal: false))
        {
            output.SetActivity(0, "loading model m");
            output.Report(0, new EvaluationProgress(0, 0, 3, TimeSpan.Zero, null));
            output.Report(0, new EvaluationProgress(0, 0, 3, TimeSpan.Zero, "v", "decoding and encoding video v"));
            output.Report(0, new EvaluationProgress(1, 0, 3, TimeSpan.FromSeconds(1), "v"));
            output.Report(0, new EvaluationProgress(2, 0, 3, TimeSpan.FromSeconds(2), "v"));
            output.Log.WriteLine("a log line");
            output.Report(0, new EvaluationProgress(3, 0, 3, TimeSpan.FromSeconds(3), "v"));
        }

        var lines = text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Collection(lines,
            l => Assert.EndsWith(": loading model m", l),
            l => Assert.EndsWith(": starting", l),
            l => Assert.EndsWith(": decoding and encoding video v", l),
            l => Assert.EndsWith(": answering v", l), // the first answer; the second is within 10 s
            l => Assert.Equal("a log line", l),
            l => Assert.StartsWith("progress 3/3 (100%)", l));
    }
}
