using System.Runtime.InteropServices;
using TorchSharp;
using System.Text;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// The few NCCL C calls data-parallel training needs (unique id, communicator, grouped all-reduce), bound at run time
/// from the libnccl.so.2 that ships with PyTorch's CUDA wheels (<c>site-packages/nvidia/nccl/lib</c>, found beside the
/// loaded libtorch) or from the library path. $SPATIAL_MLLM_NCCL names a library explicitly.
/// </summary>
public sealed unsafe class NcclCommunicator : IDisposable
{
    public const int UniqueIdBytes = 128;

    [StructLayout(LayoutKind.Sequential)]
    struct UniqueId { public fixed byte Internal[UniqueIdBytes]; }

    sealed class EntryPoints
    {
        public delegate* unmanaged<UniqueId*, int> GetUniqueId;
        public delegate* unmanaged<IntPtr*, int, UniqueId, int, int> CommInitRank;
        public delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> AllReduce;
        public delegate* unmanaged<int> GroupStart;
        public delegate* unmanaged<int> GroupEnd;
        public delegate* unmanaged<IntPtr, int> CommDestroy;
        public delegate* unmanaged<int, byte*> GetErrorString;
    }

    static readonly Lazy<(EntryPoints? Entries, string? Why)> Loaded = new(Load);

    /// <summary>Null when NCCL can be used; else why not (which files were tried).</summary>
    public static string? UnavailableReason => Loaded.Value.Why;

    static EntryPoints Entries => Loaded.Value.Entries ?? throw new InvalidOperationException(
        "Data-parallel training needs NCCL: " + Loaded.Value.Why + ". Install PyTorch with CUDA (its nvidia-nccl-cu* wheel ships " +
        "libnccl.so.2), put it on LD_LIBRARY_PATH, or set SPATIAL_MLLM_NCCL to the library's path.");

    readonly IntPtr _comm;
    readonly int _device;

    NcclCommunicator(IntPtr comm, int rank, int worldSize, int device)
    {
        _comm = comm; Rank = rank; WorldSize = worldSize; _device = device;
    }

    public int Rank { get; }
    public int WorldSize { get; }

    /// <summary>A fresh id (rank 0 makes it, every rank passes the same bytes to <see cref="Create"/>).</summary>
    public static byte[] NewUniqueId()
    {
        UniqueId id;
        Check(Entries.GetUniqueId(&id), "ncclGetUniqueId");
        var bytes = new byte[UniqueIdBytes];
        for (int i = 0; i < UniqueIdBytes; i++) bytes[i] = id.Internal[i];
        return bytes;
    }

    /// <summary>Joins the communicator of <paramref name="worldSize"/> ranks (blocks until all have joined) on the
    /// current CUDA device <paramref name="device"/>.</summary>
    public static NcclCommunicator Create(byte[] uniqueId, int rank, int worldSize, int device)
    {
        if (uniqueId.Length != UniqueIdBytes) throw new ArgumentException($"An NCCL unique id has {UniqueIdBytes} bytes, got {uniqueId.Length}.");
        UniqueId id;
        for (int i = 0; i < UniqueIdBytes; i++) id.Internal[i] = uniqueId[i];
        IntPtr comm;
        Check(Entries.CommInitRank(&comm, worldSize, id, rank), "ncclCommInitRank");
        return new NcclCommunicator(comm, rank, worldSize, device);
    }

    /// <summary>Averages each CUDA tensor over the ranks, in place, as one NCCL group on libtorch's current stream.</summary>
    public void AllReduceAverage(IReadOnlyList<Tensor> tensors)
    {
        var stream = LibTorchCuda.CurrentRawStream(_device);
        Check(Entries.GroupStart(), "ncclGroupStart");
        foreach (var t in tensors)
        {
            if (t.device_type != DeviceType.CUDA || !t.is_contiguous())
                throw new ArgumentException("NCCL all-reduce needs contiguous CUDA tensors.");
            var data = TensorAddress.Of(t);
            Check(Entries.AllReduce(data, data, (nuint)t.NumberOfElements, DataType(t.dtype), 4 /* ncclAvg */, _comm, stream), "ncclAllReduce");
        }
        Check(Entries.GroupEnd(), "ncclGroupEnd");
    }

    static int DataType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float16 => 6, ScalarType.Float32 => 7, ScalarType.Float64 => 8, ScalarType.BFloat16 => 9,
        _ => throw new ArgumentException($"No NCCL data type for {dtype}."),
    };

    static void Check(int result, string call)
    {
        if (result == 0) return;
        string text = Entries.GetErrorString is not null ? Marshal.PtrToStringUTF8((IntPtr)Entries.GetErrorString(result)) ?? "" : "";
        throw new InvalidOperationException($"{call} failed: NCCL error {result} ({text}).");
    }

    static (EntryPoints?, string?) Load()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("SPATIAL_MLLM_NCCL") is { Length: > 0 } explicitPath) candidates.Add(explicitPath);
        // site-packages/torch/lib/libtorch*.so → site-packages/nvidia/nccl/lib/libnccl.so.2
        foreach (string lib in TorchRuntime.LoadedNativeLibraries())
            if (Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(lib))) is { } sitePackages)
                candidates.Add(Path.Combine(sitePackages, "nvidia", "nccl", "lib", "libnccl.so.2"));
        candidates.Add("libnccl.so.2");
        candidates = candidates.Distinct().ToList();
        IntPtr library = IntPtr.Zero;
        foreach (string candidate in candidates)
            if ((!Path.IsPathRooted(candidate) || File.Exists(candidate)) && NativeLibrary.TryLoad(candidate, out library)) break;
        if (library == IntPtr.Zero) return (null, "libnccl.so.2 could not be loaded (tried " + string.Join(", ", candidates) + ")");
        try
        {
            return (new EntryPoints
            {
                GetUniqueId = (delegate* unmanaged<UniqueId*, int>)NativeLibrary.GetExport(library, "ncclGetUniqueId"),
                CommInitRank = (delegate* unmanaged<IntPtr*, int, UniqueId, int, int>)NativeLibrary.GetExport(library, "ncclCommInitRank"),
                AllReduce = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)NativeLibrary.GetExport(library, "ncclAllReduce"),
                GroupStart = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "ncclGroupStart"),
                GroupEnd = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "ncclGroupEnd"),
                CommDestroy = (delegate* unmanaged<IntPtr, int>)NativeLibrary.GetExport(library, "ncclCommDestroy"),
                GetErrorString = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(library, "ncclGetErrorString"),
            }, null);
        }
        catch (EntryPointNotFoundException e)
        {
            return (null, $"libnccl lacks an entry point: {e.Message}");
        }
    }

    public void Dispose() => Entries.CommDestroy(_comm);
}
