using System.CommandLine;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Scenes;
using SpatialMllm.Research.Training;
using TorchSharp;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// <c>spatial-mllm rooms-tiny train|evaluate</c>: the default model that knows rooms (<see cref="RoomsTinyRecipe"/>) made
/// from nothing (on CPU deterministic, on a GPU at scale), and measured on held-out scenes against chance and a mean-answer baseline.
/// </summary>
internal static class RoomsTinyCommand
{
    /// <summary>Training seeds run from 1000; this many keeps them below the held-out and test seeds (900,000 on).</summary>
    const int MaxTrainScenes = 100_000;

    public static Command Create()
    {
        var d = RoomsTinyRecipe.Default;
        var output = new Option<string>("--out") { Description = "Where the model and its logs go.", DefaultValueFactory = _ => "checkpoints/rooms-tiny" };
        var work = new Option<string>("--work") { Description = "Working folder (emptied first): initial weights, stage 1, training scenes, stage 2.", DefaultValueFactory = _ => "output/rooms-tiny" };
        var device = new Option<string>("--device") { Description = "cpu (deterministic, one thread: the committed weights), cuda or cuda:N (float32).", DefaultValueFactory = _ => d.Device };
        var width = new Option<int>("--decoder-width") { Description = "The decoder's hidden size (a multiple of 64).", DefaultValueFactory = _ => d.DecoderHiddenSize };
        var layers = new Option<int>("--decoder-layers") { Description = "The decoder's layers.", DefaultValueFactory = _ => d.DecoderLayers };
        var visionWidth = new Option<int>("--vision-width") { Description = "The vision tower's hidden size (a multiple of 16; heads of 16 channels).", DefaultValueFactory = _ => d.VisionHiddenSize };
        var vggtWidth = new Option<int>("--vggt-width") { Description = "VGGT's embedding size (a multiple of 16; heads of 16 channels).", DefaultValueFactory = _ => d.VggtEmbedDim };
        var tieEmbeddings = new Option<bool>("--tie-embeddings") { Description = "lm_head shares the token embeddings' weight (as Qwen2.5-VL-3B and the committed weights); false unties it: trained from scratch, tied embeddings of the object names drift together.", DefaultValueFactory = _ => d.TieWordEmbeddings };
        var fusion = new Option<FusionMode>("--fusion")
        {
            Description = "Full: the 2D + 3D model (VGGT and the connector); VisionOnly: the paper's 2D-only baseline, a plain Qwen2.5-VL trained on its own (no stage 1).",
            DefaultValueFactory = _ => FusionMode.Full,
        };
        var scenesTrained = new Option<int>("--train-scenes") { Description = "Training scenes (seeds from 1000).", DefaultValueFactory = _ => d.TrainSeeds.Count };
        var perType = new Option<int>("--per-type") { Description = "Questions of each type per training scene (at most; fewer where a scene has fewer).", DefaultValueFactory = _ => d.PerType };
        var geometrySteps = new Option<int>("--geometry-steps") { Description = "Stage 1's optimizer steps.", DefaultValueFactory = _ => d.GeometrySteps };
        var geometryBatch = new Option<int>("--geometry-batch") { Description = "Stage 1's scenes per step (one batched VGGT forward).", DefaultValueFactory = _ => d.GeometryBatch };
        var geometryLr = new Option<double>("--geometry-lr") { Description = "Stage 1's learning rate.", DefaultValueFactory = _ => d.GeometryLearningRate };
        var steps = new Option<int>("--sft-steps") { Description = "Stage 2's optimizer steps.", DefaultValueFactory = _ => d.SftSteps };
        var lr = new Option<double>("--sft-lr") { Description = "Stage 2's learning rate.", DefaultValueFactory = _ => d.SftLearningRate };
        var batch = new Option<int>("--sft-batch") { Description = "Stage 2's examples per forward (per_device_train_batch_size; far faster on a GPU than accumulation).", DefaultValueFactory = _ => d.SftBatchSize };
        var accumulation = new Option<int>("--sft-accumulation") { Description = "Stage 2's forwards per optimizer step (a step trains accumulation × batch examples).", DefaultValueFactory = _ => d.SftAccumulation };
        var warmup = new Option<double>("--sft-warmup") { Description = "Stage 2's warm-up as a fraction of its steps (then cosine decay).", DefaultValueFactory = _ => d.SftWarmupRatio };
        var geometryWeight = new Option<double>("--sft-geometry-weight") { Description = "Adds this × VGGT's geometry loss on each SFT batch's frames (renderer's ground truth) to the SFT loss; 0: SFT alone.", DefaultValueFactory = _ => d.SftGeometryWeight };
        var timeLimit = new Option<double?>("--time-limit") { Description = "Seconds for the whole run: stage 2 plans fewer steps when --sft-steps would not fit at its first steps' pace (its schedule ends there), and stops at the limit saving the model as it is." };
        var tuneVision = new Option<bool>("--tune-vision") { Description = "Stage 2 trains the vision tower too.", DefaultValueFactory = _ => d.SftTuneVision };
        var trainVideoFormat = VideoFormatOption("the training scenes");
        var tuneVggt = new Option<bool>("--tune-vggt") { Description = "Stage 2 trains VGGT too.", DefaultValueFactory = _ => d.SftTuneSpatialEncoder };
        var train = new Command("train", "Make rooms-tiny from nothing: VGGT taught geometry on synthetic scenes, then SFT on their questions (on the CPU deterministic; --device cuda for scale).")
            { output, work, device, width, layers, visionWidth, vggtWidth, tieEmbeddings, fusion, scenesTrained, perType, geometrySteps, geometryBatch, geometryLr,
              steps, lr, batch, accumulation, warmup, geometryWeight, timeLimit, tuneVision, tuneVggt, trainVideoFormat };
        train.SetAction(parse => CliSupport.Guard(parse, writer =>
        {
            if (parse.GetValue(scenesTrained) is < 1 or > MaxTrainScenes)
                throw new ArgumentException($"--train-scenes must be 1 to {MaxTrainScenes} (seeds from 1000, clear of the held-out ones); got {parse.GetValue(scenesTrained)}.");
            if (parse.GetValue(fusion) == FusionMode.SpatialOnly)
                throw new ArgumentException("--fusion trains Full (2D + 3D) or VisionOnly (2D only); SpatialOnly is an answer-time ablation (rooms-tiny evaluate --fusion).");
            if (parse.GetValue(timeLimit) is double limit && !(limit > 0 && limit < 1e7))
                throw new ArgumentException($"--time-limit must be a positive number of seconds (below 10^7); got {limit}.");
            var recipe = d with
            {
                Device = parse.GetValue(device)!, DecoderHiddenSize = parse.GetValue(width), DecoderLayers = parse.GetValue(layers),
                VisionHiddenSize = parse.GetValue(visionWidth), VggtEmbedDim = parse.GetValue(vggtWidth), TieWordEmbeddings = parse.GetValue(tieEmbeddings), WithSpatialEncoder = parse.GetValue(fusion) == FusionMode.Full,
                TrainSeeds = [.. Enumerable.Range(1000, parse.GetValue(scenesTrained))], PerType = parse.GetValue(perType),
                GeometrySteps = parse.GetValue(geometrySteps), GeometryBatch = parse.GetValue(geometryBatch), GeometryLearningRate = parse.GetValue(geometryLr),
                SftSteps = parse.GetValue(steps), SftLearningRate = parse.GetValue(lr), SftBatchSize = parse.GetValue(batch),
                SftAccumulation = parse.GetValue(accumulation), SftWarmupRatio = parse.GetValue(warmup), SftGeometryWeight = parse.GetValue(geometryWeight),
                SftTuneVision = parse.GetValue(tuneVision), SftTuneSpatialEncoder = parse.GetValue(tuneVggt),
                TimeLimit = parse.GetValue(timeLimit) is double seconds ? TimeSpan.FromSeconds(seconds) : null,
                VideoFormat = ParseVideoFormat(parse.GetValue(trainVideoFormat)!),
            };
            recipe.Validate();
            recipe.Run(parse.GetValue(output)!, parse.GetValue(work)!, writer.WriteLine);
            return CliSupport.Ok;
        }));

        var model = new Option<string>("--model") { Description = "The model folder.", DefaultValueFactory = _ => "checkpoints/rooms-tiny" };
        var scenes = new Option<int>("--scenes") { Description = "Held-out scenes to answer (the recipe's first N held-out seeds).", DefaultValueFactory = _ => RoomsTinyRecipe.Default.HeldOutSeeds.Count };
        var videos = new Option<string>("--videos") { Description = "Where the held-out scenes' videos are written.", DefaultValueFactory = _ => "output/rooms-tiny-heldout" };
        var answers = new Option<string?>("--answers") { Description = "Also write every answer as a JSON line (id, type, answer, ground truth, score, baseline)." };
        var answerFusion = new Option<FusionMode>("--fusion") { Description = "Full (2D + 3D), VisionOnly (the VGGT tokens left out at answer time) or SpatialOnly.", DefaultValueFactory = _ => FusionMode.Full };
        var sampler = new Option<string>("--sampler")
        {
            Description = "The frames answered from, as many as the recipe's: uniform (as trained) or space-aware (greedy voxel coverage on the model's own VGGT point maps).",
            DefaultValueFactory = _ => "uniform",
        }.AcceptOnlyFromAmong("uniform", "space-aware");
        var evaluateDevice = new Option<string>("--device") { Description = "cpu, cuda or cuda:N.", DefaultValueFactory = _ => "cpu" };
        var geometry = new Option<bool>("--geometry") { Description = "Also measure VGGT's depth (AbsRel, δ<1.25 after median scaling) and point error against the renderer's truth, on the frames answered from." };
        var otherRoom = new Option<bool>("--other-room") { Description = "The control for what the answers owe to the room: each room's questions answered from the next room's video." };
        var evaluateVideoFormat = VideoFormatOption("the held-out scenes");
        var evaluate = new Command("evaluate", "Per-type accuracy / MRA on held-out scenes beside a mean-answer baseline and chance, with 95 % bootstrap intervals.")
            { model, scenes, videos, evaluateVideoFormat, answers, answerFusion, sampler, otherRoom, geometry, evaluateDevice };
        evaluate.SetAction(parse => CliSupport.Guard(parse, writer =>
        {
            var recipe = RoomsTinyRecipe.Default with { Fusion = parse.GetValue(answerFusion), VideoFormat = ParseVideoFormat(parse.GetValue(evaluateVideoFormat)!) };
            int count = parse.GetValue(scenes);
            if (count < 1 || count > recipe.HeldOutSeeds.Count)
                throw new ArgumentException($"--scenes must be 1 to {recipe.HeldOutSeeds.Count}; got {count}.");
            string folder = parse.GetValue(model)!;
            int[] seeds = [.. recipe.HeldOutSeeds.Take(count)];
            using var spatial = SpatialMllmModel.Load(folder, TorchRuntime.ParseDevice(parse.GetValue(evaluateDevice)!), torch.ScalarType.Float32);
            var frames = SyntheticSceneEvaluation.Sampler(parse.GetValue(sampler)!, recipe, folder);
            using var ownedSampler = frames as IDisposable;   // the space-aware sampler's VGGT
            if (parse.GetValue(otherRoom) && count < 2) throw new ArgumentException("--other-room needs --scenes 2 or more.");
            var report = SyntheticSceneEvaluation.Evaluate(spatial, recipe, seeds, RoomsTinyRecipe.ReadMeanAnswers(folder), parse.GetValue(videos)!,
                sampler: frames, otherRoom: parse.GetValue(otherRoom));
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

    /// <summary>--video-format: how the scenes are written, mp4 (ffmpeg) or frames (PNG folders, no ffmpeg needed).</summary>
    static Option<string> VideoFormatOption(string what) => new Option<string>("--video-format")
    {
        Description = $"How {what} are written: mp4 (H.264 through ffmpeg, as the committed model was trained) or frames (folders of PNGs: the exact rendered pixels, no ffmpeg needed).",
        DefaultValueFactory = _ => "mp4",
    }.AcceptOnlyFromAmong("mp4", "frames");

    static SceneVideoFormat ParseVideoFormat(string name) => name == "frames" ? SceneVideoFormat.Frames : SceneVideoFormat.Mp4;
}
