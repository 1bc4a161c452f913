namespace SpatialMllm.Research.Evaluation;

/// <summary>Turns ScanQA questions into runner items: the annotation's question text verbatim and the scene's video.</summary>
internal static class ScanQaVideos
{
    /// <summary>The seed's explicit resized_height/resized_width for ScanQA (→ 476×644 after smart_resize).</summary>
    public static readonly (int Height, int Width) ResizedSize = (480, 640);

    /// <summary>{root}/{scene}.mp4 per question; a scene_id naming a path outside the root is refused. Every video is checked before any model time is spent; missing ones are listed.</summary>
    public static IReadOnlyList<EvaluationItem> Items(ScanQaDataset dataset, string videoRoot)
    {
        var videos = new Dictionary<string, BenchmarkVideo>();
        var missing = new List<string>();
        foreach (var q in dataset.Questions)
        {
            if (videos.ContainsKey(q.VideoKey) || missing.Contains(q.VideoKey)) continue;
            string file = DataPaths.Under(videoRoot, $"{dataset.SourcePath}, question {q.Id}", ("scene_id", q.SceneId)) + ".mp4";
            if (File.Exists(file)) videos[q.VideoKey] = new BenchmarkVideo(q.VideoKey, file, false);
            else missing.Add(q.VideoKey);
        }
        if (missing.Count > 0)
            throw new FileNotFoundException(
                $"{missing.Count} of {missing.Count + videos.Count} videos not found under {videoRoot} " +
                $"(expected {{scene}}.mp4), e.g. {string.Join(", ", missing.Take(5))}");
        return [.. dataset.Questions.OrderBy(q => q.Id, StringComparer.Ordinal)
            .Select(q => new EvaluationItem(q.Id, videos[q.VideoKey], q.Prompt))];
    }
}
