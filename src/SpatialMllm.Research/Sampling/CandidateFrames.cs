using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Sampling;

/// <summary>The candidate frames a sampler looks at, decoded a chunk at a time so a long video never sits in memory
/// whole; each chunk is reduced (resized, thumbnailed) before the next is decoded.</summary>
internal static class CandidateFrames
{
    /// <summary>Frames per ffmpeg pass.</summary>
    const int DecodeChunk = 16;

    /// <summary>torch.cat over chunks of <paramref name="indices"/> of <paramref name="reduce"/>(uint8 frames [n,3,H,W]).</summary>
    public static Tensor Decode(VideoSource video, IReadOnlyList<int> indices, Func<Tensor, Tensor> reduce) =>
        torch.cat(indices.Chunk(DecodeChunk)
            .Select(chunk =>
            {
                using var chunkScope = torch.NewDisposeScope();
                return reduce(video.ReadFrames(chunk)).MoveToOuterDisposeScope();
            })
            .ToList(), dim: 0);
}
