using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Checkpoints;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Tests.Video;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Sampling;

public class SamplerTests
{
    /// <summary>
    /// Plants geometry by the frame number each preprocessed frame carries (red = 4n): frames 11 and 33 each
    /// see a different 10×10 plane, every other frame sees only the origin.
    /// </summary>
    sealed class PlantedPredictor : IPointMapPredictor
    {
        public List<long[]> Calls { get; } = [];
        public List<int> FrameNumbers { get; } = [];

        public (Tensor WorldPoints, Tensor Confidence) Predict(Tensor frames)
        {
            Calls.Add(frames.shape);
            long s = frames.shape[0], h = frames.shape[2], w = frames.shape[3];
            var planes = new List<Tensor>();
            for (int i = 0; i < s; i++)
            {
                int n = (int)Math.Round(frames[i, 0, 0, 0].item<float>() * 255 / 4);
                FrameNumbers.Add(n);
                Tensor y = torch.linspace(0, 10, h).view(-1, 1).expand(h, w);
                Tensor x = torch.linspace(0, 10, w).view(1, -1).expand(h, w);
                planes.Add(n switch
                {
                    11 => torch.stack([x, y, torch.full_like(x, 5)], dim: -1),
                    33 => torch.stack([x + 20, y, torch.full_like(x, 10)], dim: -1),
                    _ => torch.zeros(h, w, 3),
                });
            }
            return (torch.stack(planes), torch.ones(s, h, w));
        }
    }

    [Fact]
    public void Space_aware_sampler_decodes_candidates_preprocesses_predicts_and_maps_back()
    {
        string dir = TestPaths.NewTempDir("sampling-space-aware");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "n.mkv", frames: 40));
        var predictor = new PlantedPredictor();
        using var sampler = FrameSampler.SpaceAware(3, predictor, "planted", candidates: 8);

        FrameSelection selection = sampler.Select(video);

        Assert.Equal(new[] { new long[] { 8, 3, 392, 518 } }, predictor.Calls);
        Assert.Equal(new[] { 0, 5, 11, 16, 22, 27, 33, 39 }, predictor.FrameNumbers);
        Assert.Equal(new[] { 0, 5, 11, 16, 22, 27, 33, 39 }, selection.Candidates);
        Assert.Equal(new[] { 11, 33, 0 }, selection.PickOrder); // 11 ties 33 (lower wins); then the origin, first frame
        Assert.Equal(new[] { 0, 11, 33 }, selection.Indices);
        Assert.Equal("space-aware(k=3,candidates=8,model=planted)", selection.Sampler);
        var d = selection.SpaceAware!;
        Assert.Equal(0.5f, d.VoxelSize); // shortest side: y or z, 10 long
        Assert.Equal(new[] { 1, 1, 441, 1, 1, 1, 441, 1 }, d.VoxelsPerCandidate); // 21×21 cells per plane
        Assert.Equal(new[] { 441, 882, 883 }, d.CoverageCurve);
    }

    [Fact]
    public void Space_aware_sampler_with_a_folder_that_is_no_model_names_its_config()
    {
        string dir = TestPaths.NewTempDir("sampling-no-model");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "n.mkv", frames: 4));
        using var sampler = FrameSampler.SpaceAware(2, modelDir: dir);
        var error = Assert.Throws<CheckpointFormatException>(() => sampler.Select(video));
        Assert.Contains("config.json", error.Message);
    }

    /// <summary>The sampler loads VGGT on its first selection, inside that selection's dispose scope: the weights must
    /// outlive it (`evaluate --sampler space-aware` failed on its second video with "Tensor invalid -- empty handle").</summary>
    [Fact]
    public void Space_aware_sampler_selects_in_two_videos_one_after_the_other()
    {
        string dir = TestPaths.NewTempDir("sampling-two-videos");
        using var sampler = FrameSampler.SpaceAware(2, modelDir: TestPaths.TinyFixture, device: torch.CPU);
        var first = sampler.Select(VideoSource.Open(TestVideos.TestSrc(dir, "a.mp4", frames: 6, width: 56, height: 42)));
        var second = sampler.Select(VideoSource.Open(TestVideos.TestSrc(dir, "b.mp4", frames: 6, width: 56, height: 42)));
        Assert.Equal(first.Candidates, second.Candidates);
        Assert.NotEmpty(second.Indices);
    }

    /// <summary>A model loaded inside a dispose scope keeps its weights when the scope ends.</summary>
    [Fact]
    public void A_model_loaded_in_a_dispose_scope_outlives_it()
    {
        SpatialMllmModel model;
        using (torch.NewDisposeScope()) model = SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU);
        using (model)
        {
            using var frames = TinyFixture.Read("frames_uint8_tchw");
            using var features = model.EncodeFrames(frames);
            Assert.True(features.TokenCount > 0);
        }
    }

    [Fact]
    public void Tiny_vggt_end_to_end_selects_the_reference_frames()
    {
        using var vggt = VggtLoader.Load(TestPaths.TinyFixture, torch.CPU);
        using var frames = TinyFixture.Read("video_tchw");
        var (points, confidence) = vggt.Predict(frames);
        var result = SpaceAwareSelector.Select(points, confidence, k: 2);
        int[] expected = TinyFixture.Read("sa_selected_tiny_vggt_k2").data<long>().Select(i => (int)i).ToArray();
        Assert.Equal(expected, result.Selected);
    }

    [Fact]
    public void Keyframes_pick_the_most_different_frames_greedily()
    {
        string dir = TestPaths.NewTempDir("sampling-keyframes");
        var video = VideoSource.Open(TestVideos.Numbered(dir, "n.mkv", frames: 30));

        FrameSelection selection = FrameSampler.Keyframes(3).Select(video);

        // Frames differ only in red (4n), so distance(n, m) = 4|n − m| / 255 / 3 (mean over RGB).
        double unit = 4 / 255.0 / 3;
        Assert.Equal(Enumerable.Range(0, 30), selection.Candidates);
        Assert.Equal(new[] { 0, 29, 14 }, selection.PickOrder); // 14 and 15 tie at distance 14: earliest wins
        Assert.Equal(new[] { 0, 14, 29 }, selection.Indices);
        var d = selection.Keyframes!;
        Assert.Equal(0, d.ChangeFromPrevious[0]);
        Assert.All(d.ChangeFromPrevious.Skip(1), change => Assert.Equal(unit, change, 4));
        Assert.Equal(2, d.DistanceAtPick.Count);
        Assert.Equal(29 * unit, d.DistanceAtPick[0], 4);
        Assert.Equal(14 * unit, d.DistanceAtPick[1], 4);
    }

    [Fact]
    public void Keyframes_stop_when_the_remaining_frames_repeat_picked_ones()
    {
        string dir = TestPaths.NewTempDir("sampling-keyframes-still");
        string still = TestVideos.Ffmpeg(dir, "still.mkv", "-f lavfi -i nullsrc=s=32x24:r=10,geq=r=90:g=X*4:b=Y*4 -frames:v 6 -c:v ffv1 -pix_fmt bgr0");

        FrameSelection selection = FrameSampler.Keyframes(4).Select(VideoSource.Open(still));

        Assert.Equal(new[] { 0 }, selection.Indices);
    }
}
