using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Scenes;

/// <summary>
/// Synthetic scenes written out like a local VSI-Bench snapshot, so that <c>spatial-mllm evaluate vsibench --data DIR</c>,
/// <see cref="VsiBench.Load"/> and the scorer take them unchanged:
/// <code>
/// DIR/test.jsonl                   VSI-Bench rows (id, dataset, scene_name, question_type, question, options, ground_truth, pruned)
/// DIR/synthetic/seed0007.mp4       one video per scene (or, as SceneVideoFormat.Frames, the folder DIR/synthetic/seed0007/ of PNGs)
/// DIR/train-conversations.jsonl    the same questions as fine-tuning samples (the seed's data_qwen.py format)
/// </code>
/// </summary>
public static class SyntheticBenchmark
{
    public const string QuestionsFileName = "test.jsonl";
    public const string ConversationsFileName = "train-conversations.jsonl";

    static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Renders one scene per seed into <paramref name="folder"/>, with up to <paramref name="perType"/> questions of each
    /// type per scene (ids numbered from 0 across all scenes, in the seeds' order); returns the questions. Scenes are
    /// rendered and encoded in parallel (each is drawn from its own seed, so the files and questions are the same).
    /// <paramref name="format"/>: each scene as an mp4 (ffmpeg) or as a folder of PNG frames (no ffmpeg needed).
    /// </summary>
    public static IReadOnlyList<VsiBenchQuestion> Write(string folder, IEnumerable<int> seeds, SyntheticSceneOptions? options = null, int perType = 4,
        SceneVideoFormat format = SceneVideoFormat.Mp4)
    {
        int[] list = [.. seeds];
        var perScene = new IReadOnlyList<VsiBenchQuestion>[list.Length];
        Parallel.For(0, list.Length, i =>
        {
            var scene = SyntheticScene.Create(list[i], options);
            scene.Write(Path.Combine(folder, VideoPath(scene, format)), format);
            perScene[i] = scene.Questions(firstId: 0, perType);
        });
        var questions = new List<VsiBenchQuestion>();
        foreach (var scene in perScene)
        {
            int firstId = questions.Count;
            questions.AddRange(scene.Select(q => q with { Id = firstId + q.Id }));
        }
        WriteLines(Path.Combine(folder, QuestionsFileName), questions.Select(ToJsonLine));
        WriteLines(Path.Combine(folder, ConversationsFileName), questions.Select(q => ToConversation(q, format).ToJsonString(Json)));
        return questions;
    }

    /// <summary>The video's path relative to the benchmark folder: {dataset}/{scene}.mp4, as VSI-Bench lays it out, or the
    /// frame folder {dataset}/{scene} (the layout of the seed's pre-sampled frames).</summary>
    public static string VideoPath(SyntheticScene scene, SceneVideoFormat format = SceneVideoFormat.Mp4) =>
        Path.Combine(SyntheticScene.DatasetName, VideoName(scene.SceneName, format));

    static string VideoName(string sceneName, SceneVideoFormat format) => format == SceneVideoFormat.Mp4 ? sceneName + ".mp4" : sceneName;

    /// <summary>One row of test.jsonl, with VSI-Bench's field names.</summary>
    public static string ToJsonLine(VsiBenchQuestion q) => new JsonObject
    {
        ["id"] = q.Id,
        ["dataset"] = q.Dataset,
        ["scene_name"] = q.SceneName,
        ["question_type"] = q.QuestionType,
        ["question"] = q.Question,
        ["options"] = q.Options is null ? null : new JsonArray([.. q.Options.Select(o => (JsonNode)o)]),
        ["ground_truth"] = q.GroundTruth,
        ["pruned"] = q.Pruned,
    }.ToJsonString(Json);

    /// <summary>
    /// A fine-tuning sample in the seed's format (<c>data_qwen.py</c>): the video path relative to the data folder and a
    /// human turn "&lt;video&gt;\n" + the evaluation prompt (<see cref="VsiBenchPrompts.Build"/>), answered by the ground
    /// truth (an option letter or a number), so training and evaluation see the same text. The video is the scene's mp4
    /// or its frame folder, as <paramref name="format"/> says.
    /// </summary>
    public static JsonObject ToConversation(VsiBenchQuestion q, SceneVideoFormat format = SceneVideoFormat.Mp4) => new()
    {
        ["id"] = q.Id,
        ["video"] = $"{q.Dataset}/{VideoName(q.SceneName, format)}",
        ["question_type"] = q.QuestionType,
        ["conversations"] = new JsonArray(
            new JsonObject { ["from"] = "human", ["value"] = "<video>\n" + VsiBenchPrompts.Build(q) },
            new JsonObject { ["from"] = "gpt", ["value"] = q.GroundTruth }),
    };

    static void WriteLines(string path, IEnumerable<string> lines)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllLines(path, lines);
    }
}
