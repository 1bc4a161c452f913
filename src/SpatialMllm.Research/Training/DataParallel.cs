using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// Where this process sits in a data-parallel run: rank and world size from torchrun's variables (<c>RANK</c>,
/// <c>WORLD_SIZE</c>, <c>LOCAL_RANK</c>), gradients averaged over the ranks through NCCL. One process (world size 1) is
/// the same code with the all-reduce skipped.
/// </summary>
public sealed class DataParallel : IDisposable
{
    readonly NcclCommunicator? _comm;

    DataParallel(int rank, int worldSize, int localRank, NcclCommunicator? comm)
    {
        Rank = rank; WorldSize = worldSize; LocalRank = localRank; _comm = comm;
    }

    public int Rank { get; }
    public int WorldSize { get; }
    public int LocalRank { get; }
    public bool IsMain => Rank == 0;

    /// <summary>This rank's CUDA device: each worker sees exactly one GPU (<c>CUDA_VISIBLE_DEVICES</c>, as
    /// <c>spatial-mllm train --nproc</c> sets it), so always 0.</summary>
    public int DeviceIndex => 0;

    public static DataParallel Single { get; } = new(0, 1, 0, null);

    /// <summary>The environment's rank and world size; with more than one rank, joins the NCCL communicator: rank 0
    /// writes the NCCL id into <paramref name="rendezvousFolder"/>, the others wait for it (2 minutes at most), so on
    /// several nodes it must be a folder they share (output_dir on a shared file system).
    /// <para>torchrun's variables (<c>WORLD_SIZE</c>, <c>RANK</c>, <c>LOCAL_RANK</c>) come first; under SLURM's <c>srun</c>
    /// without them, <c>SLURM_NTASKS</c>, <c>SLURM_PROCID</c> and <c>SLURM_LOCALID</c> stand for them. A run is told apart
    /// from another in the same folder by <c>SPATIAL_MLLM_RUN_ID</c>, else <c>MASTER_PORT</c>, else <c>SLURM_JOB_ID</c>.</para></summary>
    /// <param name="environment">Reads a variable (default: the process environment).</param>
    public static DataParallel FromEnvironment(string rendezvousFolder, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        int EnvInt(string name, int fallback) => int.TryParse(environment(name), out int v) ? v : fallback;
        int worldSize = EnvInt("WORLD_SIZE", EnvInt("SLURM_NTASKS", 1)), rank = EnvInt("RANK", EnvInt("SLURM_PROCID", 0));
        int localRank = EnvInt("LOCAL_RANK", EnvInt("SLURM_LOCALID", rank));
        if (worldSize < 1 || rank < 0 || rank >= worldSize) throw new ArgumentException($"RANK={rank} is outside WORLD_SIZE={worldSize}.");
        if (worldSize == 1) return Single;
        if (!torch.cuda.is_available()) throw new InvalidOperationException($"WORLD_SIZE={worldSize}: data-parallel training runs one process per CUDA GPU, and no GPU is visible.");
        // NCCL binds a communicator to the current device, which is device 0 unless set: one visible GPU per worker.
        if (torch.cuda.device_count() != 1)
            throw new InvalidOperationException($"Rank {rank} sees {torch.cuda.device_count()} GPUs: give each worker one (CUDA_VISIBLE_DEVICES=<its GPU>), " +
                                                "as `spatial-mllm train --nproc N` does.");
        string run = environment("SPATIAL_MLLM_RUN_ID") ?? environment("MASTER_PORT") ?? environment("SLURM_JOB_ID") ?? "default";
        string idFile = Path.Combine(rendezvousFolder, $".nccl-id-{run}");
        Directory.CreateDirectory(rendezvousFolder);
        byte[] id;
        if (rank == 0)
        {
            id = NcclCommunicator.NewUniqueId();
            File.WriteAllBytes(idFile + ".partial", id);
            File.Move(idFile + ".partial", idFile, overwrite: true);
        }
        else
        {
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (!File.Exists(idFile))
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"Rank {rank}: rank 0 did not write {idFile} within 2 minutes.");
                Thread.Sleep(100);
            }
            id = File.ReadAllBytes(idFile);
        }
        var comm = NcclCommunicator.Create(id, rank, worldSize, device: 0);
        if (rank == 0) File.Delete(idFile);
        return new DataParallel(rank, worldSize, localRank, comm);
    }

    /// <summary>Averages the gradients over the ranks (a parameter without one gets zeros first, so every rank
    /// reduces the same tensors).</summary>
    public void AverageGradients(IReadOnlyList<TrainableParameter> parameters)
    {
        if (_comm is null) return;
        using var noGrad = torch.no_grad();
        foreach (var p in parameters) p.Parameter.grad ??= torch.zeros_like(p.Parameter);
        _comm.AllReduceAverage(parameters.Select(p => p.Parameter.grad!).ToList());
    }

    /// <summary>The mean of a value over the ranks (for logging).</summary>
    public double[] Average(params double[] values)
    {
        if (_comm is null) return values;
        using var t = torch.tensor(values, ScalarType.Float64, new Device(DeviceType.CUDA, DeviceIndex));
        _comm.AllReduceAverage([t]);
        return t.cpu().data<double>().ToArray();
    }

    /// <summary>The main rank's <paramref name="value"/> on every rank (the others add zeros to it). A collective call,
    /// so it also waits until the main rank has got there.</summary>
    public double FromMain(double value) => _comm is null ? value : Average(IsMain ? value : 0)[0] * WorldSize;

    public void Dispose() => _comm?.Dispose();
}
