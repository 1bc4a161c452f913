using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Tests.Video;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Sampling;

public class SelectionCacheTests
{
    sealed class CountingSampler(IFrameSampler inner) : IFrameSampler
    {
        public int Calls { get; private set; }
        public string Settings => inner.Settings;
        public FrameSelection Select(VideoSource video) { Calls++; return inner.Select(video); }
    }

    sealed class CountingPredictor : IPointMapPredictor
    {
        public int Calls { get; private set; }

        public (Tensor WorldPoints, Tensor Confidence) Predict(Tensor frames)
        {
            Calls++;
            long s = frames.shape[0], h = frames.shape[2], w = frames.shape[3];
            // A different random-but-fixed cloud per frame: enough for a non-trivial selection and diagnostics.
            var generator = new torch.Generator(1234);
            return (torch.rand([s, h, w, 3], generator: generator) + torch.arange(s).view(-1, 1, 1, 1),
                    torch.rand([s, h, w], generator: generator) * 3);
        }
    }

    [Fact]
    public void Second_selection_of_the_same_content_comes_from_the_cache()
    {
        string dir = TestPaths.NewTempDir("sampling-cache");
        string video = TestVideos.Numbered(dir, "a.mkv", frames: 20);
        string renamed = Path.Combine(dir, "renamed.mkv");
        File.Copy(video, renamed);
        string cacheDir = Path.Combine(dir, "cache");
        var counting = new CountingSampler(FrameSampler.Keyframes(4));
        IFrameSampler cached = counting.WithCache(cacheDir);

        FrameSelection first = cached.Select(VideoSource.Open(video));
        FrameSelection second = cached.Select(VideoSource.Open(renamed));

        Assert.Equal(1, counting.Calls);
        Assert.Equal(first.Indices, second.Indices);
        Assert.Equal(first.Keyframes!.ChangeFromPrevious, second.Keyframes!.ChangeFromPrevious);
        string file = Assert.Single(Directory.GetFiles(cacheDir));
        Assert.Matches(@"^[0-9a-f]{16}-keyframes-[0-9a-f]{12}\.json$", Path.GetFileName(file));
    }

    [Fact]
    public void Other_settings_or_other_content_are_computed_again()
    {
        string dir = TestPaths.NewTempDir("sampling-cache-miss");
        var a = VideoSource.Open(TestVideos.Numbered(dir, "a.mkv", frames: 20));
        var b = VideoSource.Open(TestVideos.Numbered(dir, "b.mkv", frames: 21));
        string cacheDir = Path.Combine(dir, "cache");
        var four = new CountingSampler(FrameSampler.Uniform(4));
        var six = new CountingSampler(FrameSampler.Uniform(6));

        four.WithCache(cacheDir).Select(a);
        six.WithCache(cacheDir).Select(a);
        four.WithCache(cacheDir).Select(b);

        Assert.Equal((2, 1), (four.Calls, six.Calls));
        Assert.Equal(3, Directory.GetFiles(cacheDir).Length);
    }

    [Fact]
    public void A_damaged_cache_file_is_recomputed()
    {
        string dir = TestPaths.NewTempDir("sampling-cache-damaged");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "a.mkv", frames: 20));
        var cache = new SelectionCache(Path.Combine(dir, "cache"));
        var counting = new CountingSampler(FrameSampler.Uniform(4));
        cache.GetOrAdd(video, counting);
        File.WriteAllText(cache.PathFor(video.ComputeContentHash(), counting.Settings), "{ not json");

        FrameSelection again = cache.GetOrAdd(video, counting);

        Assert.Equal(2, counting.Calls);
        Assert.Equal(new[] { 0, 6, 13, 19 }, again.Indices);
    }

    [Fact]
    public void Space_aware_results_and_diagnostics_survive_the_cache_without_running_vggt_again()
    {
        string dir = TestPaths.NewTempDir("sampling-cache-sa");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "a.mkv", frames: 12, width: 28, height: 28));
        var predictor = new CountingPredictor();
        using var sampler = FrameSampler.SpaceAware(4, predictor, "random", candidates: 6);
        IFrameSampler cached = sampler.WithCache(Path.Combine(dir, "cache"));

        FrameSelection first = cached.Select(video);
        FrameSelection second = cached.Select(video);

        Assert.Equal(1, predictor.Calls);
        Assert.Equal(first.Indices, second.Indices);
        Assert.Equal(first.PickOrder, second.PickOrder);
        var (d1, d2) = (first.SpaceAware!, second.SpaceAware!);
        Assert.Equal(d1.ConfidenceThreshold, d2.ConfidenceThreshold);
        Assert.Equal(d1.VoxelSize, d2.VoxelSize);
        Assert.Equal(d1.CoverageCurve, d2.CoverageCurve);
        Assert.Equal(d1.VoxelsPerCandidate, d2.VoxelsPerCandidate);
        Assert.Equal(d1.Cloud.X, d2.Cloud.X);
        Assert.Equal(d1.Cloud.Valid, d2.Cloud.Valid);
    }
}
