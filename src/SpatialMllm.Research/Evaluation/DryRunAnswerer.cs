namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// Answers without a model, deterministically from the video key and the question text: an option letter for a
/// multiple-choice prompt, a small number otherwise. For checking data paths, sharding, resume and merging on a
/// machine before spending GPU time; <paramref name="secondsPerAnswer"/> simulates a model's pace (a video's batch of
/// questions takes that long per question).
/// </summary>
internal sealed class DryRunAnswerer(double secondsPerAnswer = 0) : IVideoAnswerer
{
    public IDecodedVideo Decode(BenchmarkVideo video)
    {
        if (video.IsFrameFolder ? !Directory.Exists(video.Path) : !File.Exists(video.Path))
            throw new FileNotFoundException($"Video not found: {video.Path}", video.Path);
        return new Prepared(video.Key, secondsPerAnswer);
    }

    public void Dispose() { }

    /// <summary>Nothing to decode or encode: the same object is both stages.</summary>
    sealed class Prepared(string videoKey, double secondsPerAnswer) : IDecodedVideo, IPreparedVideo
    {
        public IPreparedVideo Encode() => new Prepared(videoKey, secondsPerAnswer);

        public IReadOnlyList<string> Answer(IReadOnlyList<string> prompts)
        {
            if (secondsPerAnswer > 0) Thread.Sleep(TimeSpan.FromSeconds(secondsPerAnswer * prompts.Count));
            return [.. prompts.Select(Answer)];
        }

        string Answer(string prompt)
        {
            uint hash = Fnv1a(videoKey + "\n" + prompt);
            int options = prompt.Split('\n').Count(line => line.Length > 2 && line[1] == '.' && line[0] is >= 'A' and <= 'Z');
            return options > 0 ? ((char)('A' + hash % (uint)options)).ToString() : (1 + hash % 20).ToString();
        }

        public void Dispose() { }

        /// <summary>A hash that is the same in every process and run (string.GetHashCode is randomised per process).</summary>
        static uint Fnv1a(string s)
        {
            uint h = 2166136261;
            foreach (char c in s) { h ^= c; h *= 16777619; }
            return h;
        }
    }
}
