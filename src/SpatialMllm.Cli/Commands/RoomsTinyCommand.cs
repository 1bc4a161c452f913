using System.CommandLine;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Training;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm rooms-tiny train|evaluate</c>: the default model that knows rooms (<see cref="RoomsTinyRecipe"/>) made
/// from nothing on CPU, and measured on held-out scenes against chance and a mean-answer baseline.
/// </summary>
internal static class RoomsTinyCommand
{
    /// <summary>Training seeds run from 1000; this many keeps them below the held-out and test seeds (900,000 on).</summary>
    const int MaxTrainScenes = 100_000;

    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Where the model and its logs go.", DefaultValueFactory = _ => "checkpoints/rooms-tiny" };
        var work = new Option<string>("--work") { Description = "Working folder (emptied first): initial weights, stage 1, training scenes, stage 2.", DefaultValueFactory = _ => "output/rooms-tiny" };
        var width = new Option<int>("--decoder-width") { Description = "The decoder's hidden size (a multiple of 64).", DefaultValueFactory = _ => RoomsTinyRecipe.Default.DecoderHiddenSize };
        var layers = new Option<int>("--decoder-layers") { Description = "The decoder's layers.", DefaultValueFactory = _ => RoomsTinyRecipe.Default.DecoderLayers };
        var steps = new Option<int>("--sft-steps") { Description = "Stage 2's optimizer steps.", DefaultValueFactory = _ => RoomsTinyRecipe.Default.SftSteps };
        var scenesTrained = new Option<int>("--train-scenes") { Description = "Training scenes (seeds from 1000).", DefaultValueFactory = _ => RoomsTinyRecipe.Default.TrainSeeds.Count };
        var geometrySteps = new Option<int>("--geometry-steps") { Description = "Stage 1's optimizer steps.", DefaultValueFactory = _ => RoomsTinyRecipe.Default.GeometrySteps };
        var lr = new Option<double>("--sft-lr") { Description = "Stage 2's learning rate.", DefaultValueFactory = _ => RoomsTinyRecipe.Default.SftLearningRate };
        var tuneVision = new Option<bool>("--tune-vision") { Description = "Stage 2 trains the vision tower too.", DefaultValueFactory = _ => RoomsTinyRecipe.Default.SftTuneVision };
        var tuneVggt = new Option<bool>("--tune-vggt") { Description = "Stage 2 trains VGGT too.", DefaultValueFactory = _ => RoomsTinyRecipe.Default.SftTuneSpatialEncoder };
        var train = new Command("train", "Make rooms-tiny from nothing: VGGT taught geometry on synthetic scenes, then SFT on their questions (CPU, deterministic).")
            { output, work, width, layers, steps, scenesTrained, geometrySteps, lr, tuneVision, tuneVggt };
        train.SetAction(parse => CliSupport.Guard(parse, writer =>
        {
            if (parse.GetValue(layers) < 1 || parse.GetValue(steps) < 1 || parse.GetValue(geometrySteps) < 1)
                throw new ArgumentException("--decoder-layers, --sft-steps and --geometry-steps must be at least 1.");
            if (parse.GetValue(scenesTrained) is < 1 or > MaxTrainScenes)
                throw new ArgumentException($"--train-scenes must be 1 to {MaxTrainScenes} (seeds from 1000, clear of the held-out ones); got {parse.GetValue(scenesTrained)}.");
            if (!(parse.GetValue(lr) > 0)) throw new ArgumentException($"--sft-lr must be positive; got {parse.GetValue(lr)}.");
            var recipe = RoomsTinyRecipe.Default with
            {
                DecoderHiddenSize = parse.GetValue(width), DecoderLayers = parse.GetValue(layers), SftSteps = parse.GetValue(steps),
                TrainSeeds = [.. Enumerable.Range(1000, parse.GetValue(scenesTrained))], GeometrySteps = parse.GetValue(geometrySteps),
                SftLearningRate = parse.GetValue(lr), SftTuneVision = parse.GetValue(tuneVision), SftTuneSpatialEncoder = parse.GetValue(tuneVggt),
            };
            recipe.Run(parse.GetValue(output)!, parse.GetValue(work)!, writer.WriteLine);
            return CliSupport.Ok;
        }));

        var model = new Option<string>("--model") { Description = "The model folder.", DefaultValueFactory = _ => "checkpoints/rooms-tiny" };
        var scenes = new Option<int>("--scenes") { Description = "Held-out scenes to answer (the recipe's first N held-out seeds).", DefaultValueFactory = _ => RoomsTinyRecipe.Default.HeldOutSeeds.Count };
        var videos = new Option<string>("--videos") { Description = "Where the held-out scenes' videos are written.", DefaultValueFactory = _ => "output/rooms-tiny-heldout" };
        var answers = new Option<string?>("--answers") { Description = "Also write every answer as a JSON line (id, type, answer, ground truth, score, baseline)." };
        var fusion = new Option<FusionMode>("--fusion") { Description = "Full (2D + 3D), VisionOnly (the VGGT tokens left out at answer time) or SpatialOnly.", DefaultValueFactory = _ => FusionMode.Full };
        var sampler = new Option<string>("--sampler")
        {
            Description = "The frames answered from, as many as the recipe's: uniform (as trained) or space-aware (greedy voxel coverage on the model's own VGGT point maps).",
            DefaultValueFactory = _ => "uniform",
        }.AcceptOnlyFromAmong("uniform", "space-aware");
        var geometry = new Option<bool>("--geometry") { Description = "Also measure VGGT's depth (AbsRel, δ<1.25 after median scaling) and point error against the renderer's truth, on the frames answered from." };
        var evaluate = new Command("evaluate", "Per-type accuracy / MRA on held-out scenes beside a mean-answer baseline and chance, with 95 % bootstrap intervals.")
            { model, scenes, videos, answers, fusion, sampler, geometry };
        evaluate.SetAction(parse => CliSupport.Guard(parse, writer =>
        {
            var recipe = RoomsTinyRecipe.Default with { Fusion = parse.GetValue(fusion) };
            int count = parse.GetValue(scenes);
            if (count < 1 || count > recipe.HeldOutSeeds.Count)
                throw new ArgumentException($"--scenes must be 1 to {recipe.HeldOutSeeds.Count}; got {count}.");
            string folder = parse.GetValue(model)!;
            int[] seeds = [.. recipe.HeldOutSeeds.Take(count)];
            using var spatial = SpatialMllmModel.Load(folder, TorchRuntime.ParseDevice("cpu"));
            var frames = SyntheticSceneEvaluation.Sampler(parse.GetValue(sampler)!, recipe, folder);
            using var ownedSampler = frames as IDisposable;   // the space-aware sampler's VGGT
            var report = SyntheticSceneEvaluation.Evaluate(spatial, recipe, seeds, RoomsTinyRecipe.ReadMeanAnswers(folder), parse.GetValue(videos)!,
                sampler: frames);
            writer.Write(report.FormatTable());
            if (parse.GetValue(geometry))
            {
                var vggt = spatial.spatial_encoder?.vggt_model
                    ?? throw new ArgumentException($"--geometry: {folder} has no spatial encoder (VGGT) to measure.");
                writer.WriteLine();
                writer.Write(SyntheticGeometryEvaluation.Evaluate(vggt, recipe.Scene, seeds, frames).FormatTable());
            }
            if (parse.GetValue(answers) is { } path)
                File.WriteAllLines(path, report.Answers.Select(a => System.Text.Json.JsonSerializer.Serialize(new
                {
                    id = a.Question.Id, scene = a.Question.SceneName, type = a.Question.QuestionType, answer = a.Answer,
                    ground_truth = a.Question.GroundTruth, score = a.Score, baseline = a.BaselineAnswer, baseline_score = a.BaselineScore,
                })));
            return CliSupport.Ok;
        }));
        return new Command("rooms-tiny", "The default model that knows rooms: train it from nothing, or measure it on held-out scenes.") { train, evaluate };
    }
}
