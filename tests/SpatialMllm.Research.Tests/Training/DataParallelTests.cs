using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Training;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Training;

public class DataParallelTests
{
    [Fact]
    public void Without_rank_variables_training_is_one_process_with_nothing_to_reduce()
    {
        var single = DataParallel.FromEnvironment(TestPaths.NewTempDir("dp"), _ => null);
        Assert.Same(DataParallel.Single, single);
        Assert.Equal((0, 1, true), (single.Rank, single.WorldSize, single.IsMain));
        Assert.Equal([2.5, 7.0], single.Average(2.5, 7.0));
    }

    [Fact]
    public void Several_ranks_without_a_gpu_or_nccl_fail_with_a_clear_message()
    {
        var env = new Dictionary<string, string> { ["WORLD_SIZE"] = "2", ["RANK"] = "0" };
        Assert.SkipWhen(torch.cuda.is_available() && NcclCommunicator.UnavailableReason is null,
            "a GPU and NCCL are here, so several ranks would start for real: the message for their absence is checked on machines without them.");
        var e = Assert.ThrowsAny<Exception>(() => DataParallel.FromEnvironment(TestPaths.NewTempDir("dp"), k => env.GetValueOrDefault(k)));
        Assert.True(e.Message.Contains("no GPU is visible") || e.Message.Contains("libnccl.so.2"), e.Message);
    }

    [Fact]
    public void A_rank_outside_the_world_is_rejected()
    {
        var env = new Dictionary<string, string> { ["WORLD_SIZE"] = "2", ["RANK"] = "2" };
        Assert.Throws<ArgumentException>(() => DataParallel.FromEnvironment(TestPaths.NewTempDir("dp"), k => env.GetValueOrDefault(k)));
    }

    [Fact]
    public void Under_slurm_its_task_variables_give_the_rank_and_world_and_torchruns_come_first()
    {
        DataParallel From(Dictionary<string, string> env) => DataParallel.FromEnvironment(TestPaths.NewTempDir("dp"), k => env.GetValueOrDefault(k));
        Assert.Same(DataParallel.Single, From(new() { ["SLURM_NTASKS"] = "1", ["SLURM_PROCID"] = "0", ["SLURM_LOCALID"] = "0" }));
        var e = Assert.Throws<ArgumentException>(() => From(new() { ["SLURM_NTASKS"] = "4", ["SLURM_PROCID"] = "5" }));
        Assert.Contains("RANK=5 is outside WORLD_SIZE=4", e.Message);
        // torchrun's variables win over SLURM's: RANK 2 of WORLD_SIZE 2 is refused, though SLURM's task 2 of 4 would be valid.
        var torchrun = Assert.Throws<ArgumentException>(() => From(new() { ["WORLD_SIZE"] = "2", ["RANK"] = "2", ["SLURM_NTASKS"] = "4", ["SLURM_PROCID"] = "2" }));
        Assert.Contains("RANK=2 is outside WORLD_SIZE=2", torchrun.Message);
    }

    [Fact]
    public void The_nccl_binding_names_what_it_tried_when_the_library_is_missing()
    {
        string? why = NcclCommunicator.UnavailableReason;
        Assert.SkipWhen(why is null, "NCCL loads here: the message for a missing library is checked on machines without it.");
        Assert.Contains("libnccl.so.2", why);
    }
}
