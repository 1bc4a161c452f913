using System.Text.Json.Nodes;
using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

/// <summary>A small ScanQA val on disk in the seed's llava-style format (scanqa_val_llava_style.json): 3 scenes with 2, 3
/// and 4 questions, and a {scene}.mp4 per scene (decodable ffmpeg test videos, or empty placeholders).</summary>
internal sealed class MiniScanQa
{
    public string Root { get; }
    public string DatasetPath => Path.Combine(Root, "scanqa_val_llava_style.json");
    public const int QuestionCount = 2 + 3 + 4;

    public MiniScanQa(string name, bool realVideos = false)
    {
        Root = TestPaths.NewTempDir(name);
        string[] questions = ["What color is the chair?", "Where is the lamp placed?", "What is on the table?", "How many pillows are on the bed?"];
        string[] answers = ["brown", "on desk", "book", "two"];
        var rows = new JsonArray();
        for (int v = 0; v < 3; v++)
        {
            string scene = $"scene{v:0000}_00";
            for (int k = 0; k < 2 + v; k++)
                rows.Add(new JsonObject
                {
                    ["id"] = $"scanqa_val-scene{v:0000}-{k}_0",
                    ["video"] = $"scannet/{scene}",
                    ["conversations"] = new JsonArray(
                        new JsonObject { ["from"] = "human", ["value"] = $"<image> {questions[k]} Answer the question simply." },
                        new JsonObject { ["from"] = "gpt", ["value"] = answers[k] }),
                    ["metadata"] = new JsonObject { ["answers"] = new JsonArray(answers[k], answers[k] + " one") },
                });
            if (realVideos) Video.TestVideos.TestSrc(Root, scene + ".mp4", frames: 10 + v, width: 96, height: 72);
            else File.WriteAllBytes(Path.Combine(Root, scene + ".mp4"), []);
        }
        File.WriteAllText(DatasetPath, rows.ToJsonString());
    }

    public ScanQaDataset Dataset => ScanQa.Load(DatasetPath);
}
