namespace SpatialMllm.Research.Evaluation;

/// <summary>One question to put to the answerer.</summary>
internal sealed record EvaluationItem(string Id, BenchmarkVideo Video, string Prompt);
