namespace SpatialMllm.Research.Evaluation;

/// <summary>A benchmark video: an .mp4 file, or (the seed's space-aware-sampling path) a folder of pre-selected PNG frames.</summary>
/// <param name="Key">"{dataset}/{scene}": the grouping and sharding key.</param>
internal sealed record BenchmarkVideo(string Key, string Path, bool IsFrameFolder);
