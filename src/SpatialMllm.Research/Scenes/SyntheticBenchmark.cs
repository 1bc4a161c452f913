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
/// DIR/synthetic/seed0007.mp4       one video per scene
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
    /// </summary>
    public static IReadOnlyList<VsiBenchQuestion> Write(string folder, IEnumerable<int> seeds, SyntheticSceneOptions? options = null, int perType = 4)
    {
        int[] list = [.. seeds];
        var perScene = new IReadOnlyList<VsiBenchQuestion>[list.Length];
        Parallel.For(0, list.Length, i =>
        {
            var scene = SyntheticScene.Create(list[i], options);
            scene.WriteVideo(Path.Combine(folder, VideoPath(scene)));
            perScene[i] = scene.Questions(firstId: 0, perType);
        });
        var questions = new List<VsiBenchQuestion>();
        foreach (var scene in perScene)
        {
            int firstId = questions.Count;
            questions.AddRange(scene.Select(q => q with { Id = firstId + q.Id }));
        }
        WriteLines(Path.Combine(folder, QuestionsFileName), questions.Select(ToJsonLine));
        WriteLines(Path.Combine(folder, ConversationsFileName), questions.Select(q => ToConversation(q).ToJsonString(Json)));
        return questions;
    }

    /// <summary>The video's path relative to the benchmark folder: {dataset}/{scene}.mp4, as VSI-Bench lays it out.</summary>
    public static string VideoPath(SyntheticScene scene) => Path.Combine(SyntheticScene.DatasetName, scene.SceneName + ".mp4");

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
    /// truth (an option letter or a number), so training and evaluation see the same text.
    /// </summary>
    public static JsonObject ToConversation(VsiBenchQuestion q) => new()
    {
        ["id"] = q.Id,
        ["video"] = $"{q.Dataset}/{q.SceneName}.mp4",
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
