using SpatialMllm.Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Notebooks;

/// <summary>A synthetic multiple-choice question about a video, with the frames in memory.</summary>
/// <param name="Frames">uint8 [T, 3, H, W].</param>
public sealed record VideoQuestion(Tensor Frames, string Question, string Answer, IReadOnlyList<string> Choices) : IDisposable
{
    /// <summary>The seed's annotation row for this question with <paramref name="answer"/> as the assistant turn.</summary>
    public SftRow ToRow(string source, string? answer = null) =>
        new(source, 0, "(in memory)", "", [new SftTurn("user", "<video>\n" + Question), new SftTurn("assistant", answer ?? Answer)]);

    public void Dispose() => Frames.Dispose();
}

/// <summary>
/// A learnable toy task for fine-tuning demos on the CPU: short videos of a room whose walls are one colour (with
/// per-pixel noise and a moving bright square, so no two videos are equal), and the question which colour it is.
/// The answer (A, B or C) is in the pixels and nowhere else, so a model can only learn it through the visual tokens.
/// </summary>
public static class ColorRooms
{
    public static readonly IReadOnlyList<(string Name, byte R, byte G, byte B)> Colors =
        [("red", 200, 40, 40), ("green", 40, 180, 60), ("blue", 40, 70, 210)];

    /// <summary>Multiple choice; the answer is the option's letter (one token). Short, so that the video tokens are a
    /// large part of the tiny model's context.</summary>
    public const string Question = "Wall colour? A red, B green, C blue.";

    static readonly string[] Letters = ["A", "B", "C"];

    /// <summary><paramref name="count"/> videos cycling through the colours; frames [T, 3, H, W].</summary>
    public static List<VideoQuestion> Make(int count, int seed, int frames = 4, int height = 84, int width = 112)
    {
        var generator = new torch.Generator((ulong)seed);
        var choices = Letters;
        var list = new List<VideoQuestion>();
        for (int i = 0; i < count; i++)
        {
            using var scope = torch.NewDisposeScope();
            var (_, r, g, b) = Colors[i % Colors.Count];
            var colour = torch.tensor(new float[] { r, g, b }).view(1, 3, 1, 1);
            var video = colour + torch.randn([frames, 3, height, width], generator: generator) * 25f;
            for (int t = 0; t < frames; t++)
            {
                int y = (int)(torch.randint(0, height - 20, [1], generator: generator).item<long>());
                int x = (int)(torch.randint(0, width - 20, [1], generator: generator).item<long>());
                video[t, .., y..(y + 20), x..(x + 20)] = torch.tensor(235f);
            }
            var uint8 = video.clamp(0, 255).to(ScalarType.Byte).MoveToOuterDisposeScope();
            list.Add(new VideoQuestion(uint8, Question, Letters[i % Colors.Count], choices));
        }
        return list;
    }
}
