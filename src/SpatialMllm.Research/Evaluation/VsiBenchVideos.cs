using System.Globalization;

namespace SpatialMllm.Research.Evaluation;

/// <summary>Turns VSI-Bench questions into runner items: the seed's prompt and the video each evaluator reads.</summary>
internal static class VsiBenchVideos
{
    /// <summary>{root}/{dataset}/{scene}.mp4, else the folder {root}/{dataset}/{scene}/ of PNG frames (the seed's
    /// space-aware-sampling layout); rows naming paths outside the root are refused. Every video is checked before any model time is spent; missing ones are listed.</summary>
    public static IReadOnlyList<EvaluationItem> Items(VsiBenchDataset dataset, string videoRoot)
    {
        var videos = new Dictionary<string, BenchmarkVideo>();
        var missing = new List<string>();
        foreach (var q in dataset.Questions)
        {
            if (videos.ContainsKey(q.VideoKey) || missing.Contains(q.VideoKey)) continue;
            string folder = DataPaths.Under(videoRoot, $"{dataset.SourcePath}, question {q.Id}", ("dataset", q.Dataset), ("scene_name", q.SceneName));
            string file = folder + ".mp4";
            if (File.Exists(file)) videos[q.VideoKey] = new BenchmarkVideo(q.VideoKey, file, false);
            else if (Directory.Exists(folder)) videos[q.VideoKey] = new BenchmarkVideo(q.VideoKey, folder, true);
            else missing.Add(q.VideoKey);
        }
        if (missing.Count > 0)
            throw new FileNotFoundException(
                $"{missing.Count} of {missing.Count + videos.Count} videos not found under {videoRoot} " +
                $"(expected {{dataset}}/{{scene}}.mp4 or a frame folder), e.g. {string.Join(", ", missing.Take(5))}");
        return [.. dataset.Questions.OrderBy(q => q.Id).Select(q =>
            new EvaluationItem(q.Id.ToString(CultureInfo.InvariantCulture), videos[q.VideoKey], VsiBenchPrompts.Build(q)))];
    }
}
