using System.CommandLine;
using System.Diagnostics;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Demo;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Hub;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Training;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm demo</c>: the main job on its embedded default, <c>checkpoints/rooms-tiny</c> (trained on synthetic
/// rooms, committed): renders a held-out synthetic room, asks one question of each type about it and prints each answer
/// beside the ground truth. With <c>--model checkpoints/tiny</c> the tiny random-weight checkpoint and a synthetic video are
/// made when absent; with a model of your own and no video, only the synthetic video is made (in the temporary folder);
/// either answers <c>--question</c> and prints the time of each stage.
/// </summary>
internal static class DemoCommand
{
    const string TinyFolder = "checkpoints/tiny", RoomsTinyFolder = "checkpoints/rooms-tiny";

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder or owner/name on the Hugging Face hub; the default is made if absent.", DefaultValueFactory = _ => RoomsTinyFolder };
        var video = new Option<string?>("--video") { Description = "Video file or frame folder; default: a synthetic video (beside the tiny checkpoint, or in the temporary folder)." };
        var question = new Option<string>("--question") { Description = "The question.", DefaultValueFactory = _ => "How many chairs are in the room? Please answer the question using a single word or phrase." };
        var frames = new Option<int>("--frames") { Description = "Frames sampled uniformly (the paper uses 16).", DefaultValueFactory = _ => 8 };
        var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "auto" };
        var dtype = new Option<string?>("--dtype") { Description = "float32 or bfloat16 (default: bf16 on cuda, fp32 on cpu)" };
        var maxNewTokens = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 16 };
        var command = new Command("demo", "Answer a question about a video (default: the tiny checkpoint and a synthetic video, on CPU).")
            { model, video, question, frames, device, dtype, maxNewTokens };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            string modelDir = parse.GetValue(model)!;
            string? videoPath = parse.GetValue(video);
            if (modelDir == RoomsTinyFolder && videoPath is null) return AskHeldOutRoom(modelDir, output);
            if (modelDir == TinyFolder)
            {
                // The embedded default: made on first use (random weights, seed 1234; ffmpeg's testsrc2).
                var tiny = Samples.TinyCheckpoint(TinyFolder);
                (modelDir, videoPath) = (tiny.ModelDir, videoPath ?? tiny.VideoPath);
            }
            videoPath ??= Samples.SyntheticVideo(Path.Combine(Path.GetTempPath(), "spatial-mllm", Samples.SyntheticVideoName));
            modelDir = HubModels.ResolveFolder(modelDir);

            var clock = Stopwatch.StartNew();
            var d = TorchRuntime.ParseDevice(parse.GetValue(device));
            string? dtypeName = parse.GetValue(dtype);
            using var spatial = SpatialMllmModel.Load(modelDir, d, dtypeName == null ? null : TorchRuntime.ParseDType(dtypeName));
            double loadMs = clock.Elapsed.TotalMilliseconds;
            using (var checkpoint = Checkpoint.Open(modelDir)) output.Write(CheckpointSummary.Describe(checkpoint));
            var report = spatial.LoadReport!;
            output.WriteLine($"  key check: {report.Loaded.Count} loaded, {report.Missing.Count} missing, {report.Unexpected.Count} unexpected, {report.Skipped.Count} skipped by name");
            output.WriteLine($"loaded on {spatial.Device} ({spatial.DType}) in {loadMs:F0} ms");

            var answer = spatial.Answer(videoPath, parse.GetValue(question)!, FrameSampler.Uniform(parse.GetValue(frames)),
                new AnswerOptions(MaxNewTokens: parse.GetValue(maxNewTokens)));
            output.WriteLine($"video: {videoPath}");
            output.WriteLine($"question: {parse.GetValue(question)}");
            output.WriteLine($"answer: {answer.Text.ReplaceLineEndings("⏎")}");
            output.WriteLine($"tokens: {answer.PromptTokens} in the prompt ({answer.VideoTokens} video), {answer.GeneratedIds.Count} generated ({answer.StopReason})");
            foreach (var t in answer.Timings) output.WriteLine($"  {t.Stage,-28} {t.Milliseconds,10:F1} ms");
            output.WriteLine($"  {"total",-28} {answer.TotalMilliseconds,10:F1} ms");
            return 0;
        }));
        return command;
    }

    /// <summary>The default: rooms-tiny on a room it never saw (<see cref="RoomsTinyRecipe.DemoSeed"/>), one question of each
    /// type, each answer beside the ground truth and its VSI-Bench score.</summary>
    static int AskHeldOutRoom(string modelDir, TextWriter output)
    {
        if (!File.Exists(Path.Combine(modelDir, "config.json")))
            throw new FileNotFoundException($"{modelDir} holds no model: it is committed with the repository; make it again with environment/train-rooms-tiny.sh.");
        var recipe = RoomsTinyRecipe.Default;
        var clock = Stopwatch.StartNew();
        var scene = SyntheticScene.Create(recipe.DemoSeed, recipe.Scene);
        string videoPath = scene.WriteVideo(Path.Combine(Path.GetTempPath(), "spatial-mllm", $"rooms-tiny-{scene.SceneName}.mp4"));
        using var spatial = SpatialMllmModel.Load(modelDir, TorchRuntime.ParseDevice("cpu"));
        output.WriteLine($"model: {modelDir} (trained on synthetic rooms: environment/train-rooms-tiny.sh), loaded in {clock.Elapsed.TotalMilliseconds:F0} ms");
        output.WriteLine($"video: {videoPath} — {scene}, a seed training never used; {recipe.Frames} uniform frames");
        clock.Restart();
        using var features = spatial.EncodeVideo(videoPath, recipe.Sampler, recipe.AnswerOptions);
        var questions = scene.Questions(perType: 1);
        var answers = spatial.AnswerAll(features, [.. questions.Select(VsiBenchPrompts.Build)], recipe.AnswerOptions);
        foreach (var (q, a) in questions.Zip(answers))
        {
            double score = VsiBench.ScoreAnswer(q, a.Text).Score;
            output.WriteLine();
            output.WriteLine($"[{q.QuestionType}] {q.Question.ReplaceLineEndings(" ")}");
            if (q.Options is { } options) output.WriteLine($"  options: {string.Join("  ", options)}");
            output.WriteLine($"  answer: {a.Text.ReplaceLineEndings("⏎"),-8} ground truth: {q.GroundTruth,-8} score: {score:0.00}{(score >= 0.9 ? "  ✓" : "")}");
        }
        output.WriteLine();
        output.WriteLine($"{questions.Count} questions encoded and answered in {clock.Elapsed.TotalMilliseconds:F0} ms on CPU " +
                         "(score: exact match for choices, VSI-Bench's MRA for numbers; ✓: the right choice, or a number within 10 %; " +
                         "`spatial-mllm rooms-tiny evaluate` measures many rooms)");
        return 0;
    }
}
