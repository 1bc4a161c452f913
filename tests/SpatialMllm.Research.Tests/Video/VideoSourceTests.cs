using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Video;

public class VideoSourceTests
{
    /// <summary>The frame number encoded in a numbered test frame (red = 4n at every pixel).</summary>
    static int FrameNumber(Tensor frame) => frame[0].to(ScalarType.Int32).max().item<int>() / 4;

    static int[] FrameNumbers(Tensor frames) => Enumerable.Range(0, (int)frames.shape[0]).Select(t => FrameNumber(frames[t])).ToArray();

    [Fact]
    public void Probe_reports_frame_count_fps_duration_and_size()
    {
        string dir = TestPaths.NewTempDir("video-probe");
        var info = VideoSource.Open(TestVideos.TestSrc(dir, "testsrc.mp4", frames: 25)).Info;

        Assert.Equal(25, info.FrameCount);
        Assert.Equal((320, 240), (info.Width, info.Height));
        Assert.Equal(10.0, info.FramesPerSecond);
        Assert.Equal(2.5, info.Duration!.Value.TotalSeconds, precision: 2);
        Assert.Equal(0, info.Rotation);
        Assert.EndsWith("testsrc.mp4", info.Path);
    }

    [Fact]
    public void ReadFrames_returns_exactly_the_requested_frames_in_the_requested_order()
    {
        string dir = TestPaths.NewTempDir("video-read");
        var source = VideoSource.Open(TestVideos.Numbered(dir, "numbered.mkv", frames: 30));

        using var frames = source.ReadFrames([29, 0, 7, 7, 13]);

        Assert.Equal(new long[] { 5, 3, 48, 64 }, frames.shape);
        Assert.Equal(ScalarType.Byte, frames.dtype);
        Assert.Equal(new[] { 29, 0, 7, 7, 13 }, FrameNumbers(frames));
        // Lossless: green = 4x and blue = 4y at every pixel, in RGB channel order.
        Assert.Equal(4 * 10, frames[1, 1, 5, 10].item<byte>());
        Assert.Equal(4 * 5, frames[1, 2, 5, 10].item<byte>());
    }

    [Fact]
    public void Variable_frame_rate_video_is_indexed_by_frame_number_not_timestamp()
    {
        string dir = TestPaths.NewTempDir("video-vfr");
        var source = VideoSource.Open(TestVideos.VariableFrameRate(dir, "vfr.mkv", frames: 30));
        Assert.Equal(30, source.Info.FrameCount);

        using var frames = source.ReadFrames([0, 9, 10, 11, 20, 29]);

        Assert.Equal(new[] { 0, 9, 10, 11, 20, 29 }, FrameNumbers(frames));
    }

    [Fact]
    public void Portrait_video_keeps_its_size()
    {
        string dir = TestPaths.NewTempDir("video-portrait");
        var source = VideoSource.Open(TestVideos.Numbered(dir, "portrait.mkv", frames: 4, width: 48, height: 64));

        using var frames = source.ReadFrames([3]);

        Assert.Equal((48, 64), (source.Info.Width, source.Info.Height));
        Assert.Equal(new long[] { 1, 3, 64, 48 }, frames.shape);
        Assert.Equal(3, FrameNumber(frames[0]));
    }

    [Fact]
    public void Rotation_metadata_is_applied_and_reported()
    {
        string dir = TestPaths.NewTempDir("video-rotated");
        string landscape = TestVideos.TestSrc(dir, "landscape.mp4", frames: 5, width: 64, height: 48);
        var source = VideoSource.Open(TestVideos.Rotated(dir, "rotated.mp4", landscape, degrees: 90));

        using var frames = source.ReadFrames([0, 4]);

        Assert.Equal(90, Math.Abs(source.Info.Rotation));
        Assert.Equal((48, 64), (source.Info.Width, source.Info.Height));
        Assert.Equal(new long[] { 2, 3, 64, 48 }, frames.shape);
    }

    [Fact]
    public void One_frame_and_tiny_videos_read_at_native_size()
    {
        string dir = TestPaths.NewTempDir("video-tiny");
        var one = VideoSource.Open(TestVideos.Numbered(dir, "one.mkv", frames: 1));
        var tiny = VideoSource.Open(TestVideos.Numbered(dir, "tiny.mkv", frames: 3, width: 13, height: 9));

        using var oneFrame = one.ReadFrames([0]);
        using var tinyFrames = tiny.ReadFrames([0, 1, 2]);

        Assert.Equal(1, one.Info.FrameCount);
        Assert.Equal(new long[] { 1, 3, 48, 64 }, oneFrame.shape);
        Assert.Equal(new long[] { 3, 3, 9, 13 }, tinyFrames.shape);
        Assert.Equal(new[] { 0, 1, 2 }, FrameNumbers(tinyFrames));
    }

    [Fact]
    public void Empty_index_list_gives_an_empty_tensor()
    {
        string dir = TestPaths.NewTempDir("video-empty-read");
        var source = VideoSource.Open(TestVideos.Numbered(dir, "n.mkv", frames: 3));
        using var frames = source.ReadFrames([]);
        Assert.Equal(new long[] { 0, 3, 48, 64 }, frames.shape);
    }

    [Fact]
    public void Out_of_range_index_names_the_file()
    {
        string dir = TestPaths.NewTempDir("video-range");
        var source = VideoSource.Open(TestVideos.Numbered(dir, "n.mkv", frames: 3));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => source.ReadFrames([0, 3]));
        Assert.Contains("n.mkv", error.Message);
        Assert.Contains("0..2", error.Message);
    }

    [Fact]
    public void Missing_file_is_FileNotFound_naming_it()
    {
        string path = Path.Combine(TestPaths.NewTempDir("video-missing"), "nothing-here.mp4");
        var error = Assert.Throws<FileNotFoundException>(() => VideoSource.Open(path));
        Assert.Contains("nothing-here.mp4", error.Message);
    }

    [Fact]
    public void Not_a_video_is_a_read_error_naming_it()
    {
        string path = Path.Combine(TestPaths.NewTempDir("video-text"), "notes.mp4");
        File.WriteAllText(path, "this is not a video\n");
        var error = Assert.Throws<VideoReadException>(() => VideoSource.Open(path));
        Assert.Contains("notes.mp4", error.Message);
        Assert.Equal(path, error.VideoPath);
    }

    [Fact]
    public void Zero_length_video_is_a_read_error()
    {
        string dir = TestPaths.NewTempDir("video-zero");
        string path = TestVideos.TestSrc(dir, "zero.mp4", frames: 0);
        var error = Assert.Throws<VideoReadException>(() => VideoSource.Open(path));
        Assert.Contains("zero.mp4", error.Message);
    }

    [Fact]
    public void Truncated_video_without_its_index_is_a_read_error()
    {
        string dir = TestPaths.NewTempDir("video-trunc");
        string full = TestVideos.TestSrc(dir, "full.mp4", frames: 60);
        string truncated = TestVideos.Truncated(dir, "truncated.mp4", full, 0.5);
        var error = Assert.Throws<VideoReadException>(() => VideoSource.Open(truncated));
        Assert.Contains("truncated.mp4", error.Message);
    }

    [Fact]
    public void Truncated_video_with_its_index_first_counts_what_is_there_and_fails_clearly_past_it()
    {
        string dir = TestPaths.NewTempDir("video-trunc-faststart");
        string full = TestVideos.TestSrc(dir, "full.mp4", frames: 60, extra: "-movflags +faststart");
        var source = VideoSource.Open(TestVideos.Truncated(dir, "truncated.mp4", full, 0.5));

        Assert.InRange(source.Info.FrameCount, 1, 59);
        using (var first = source.ReadFrames([0])) Assert.Equal(new long[] { 1, 3, 240, 320 }, first.shape);
        var error = Assert.Throws<VideoReadException>(() => source.ReadFrames(Enumerable.Range(0, source.Info.FrameCount).ToArray()));
        Assert.Contains("truncated.mp4", error.Message);
        Assert.Contains("truncated or corrupt", error.Message);
    }

    [Fact]
    public void Frame_folder_is_sorted_by_name_and_decodes_like_the_video()
    {
        string dir = TestPaths.NewTempDir("video-folder");
        TestVideos.NumberedPngs(dir, frames: 12);
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "ignored");

        var source = VideoSource.Open(dir);
        using var frames = source.ReadFrames([11, 0, 5]);

        Assert.Equal(new VideoInfo(dir, 12, 64, 48, null, null, 0), source.Info);
        Assert.Equal(new[] { 11, 0, 5 }, FrameNumbers(frames));
        Assert.Equal(4 * 10, frames[1, 1, 5, 10].item<byte>());
    }

    [Fact]
    public void Frame_folder_errors_name_the_offending_file()
    {
        string empty = TestPaths.NewTempDir("video-folder-empty");
        Assert.Contains(empty, Assert.Throws<VideoReadException>(() => VideoSource.Open(empty)).Message);

        string fake = TestPaths.NewTempDir("video-folder-fake");
        TestVideos.NumberedPngs(fake, frames: 2);
        File.WriteAllText(Path.Combine(fake, "frame_0002.png"), "not a png");
        Assert.Contains("frame_0002.png", Assert.Throws<VideoReadException>(() => VideoSource.Open(fake)).Message);

        string mixed = TestPaths.NewTempDir("video-folder-mixed");
        TestVideos.NumberedPngs(mixed, frames: 2);
        TestVideos.NumberedPngs(mixed, frames: 1, width: 32, height: 32, prefix: "frame_1");
        var error = Assert.Throws<VideoReadException>(() => VideoSource.Open(mixed));
        Assert.Contains("frame_10000.png", error.Message);
        Assert.Contains("32x32", error.Message);
    }

    [Fact]
    public void Content_hash_follows_the_bytes()
    {
        string dir = TestPaths.NewTempDir("video-hash");
        string a = TestVideos.Numbered(dir, "a.mkv", frames: 3);
        string b = TestVideos.Numbered(dir, "b.mkv", frames: 4);
        string aCopy = Path.Combine(dir, "a-copy.mkv");
        File.Copy(a, aCopy);

        string hashA = VideoSource.Open(a).ComputeContentHash();
        Assert.Equal(64, hashA.Length);
        Assert.Equal(hashA, VideoSource.Open(aCopy).ComputeContentHash());
        Assert.NotEqual(hashA, VideoSource.Open(b).ComputeContentHash());
    }
}
