using System.IO.MemoryMappedFiles;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Checkpoints;

/// <summary>Dtype, shape and byte range of one tensor in a safetensors file (offsets relative to the data section).</summary>
internal sealed record SafetensorsEntry(string Key, ScalarType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A safetensors file, memory-mapped: the header is parsed and validated once, and each tensor is copied from the
/// mapping straight into its destination, so a multi-GB shard is never held in memory twice.
/// Format: 8-byte little-endian header length, a JSON header {key: {dtype, shape, data_offsets}}, then the data.
/// </summary>
internal sealed class SafetensorsFile : IDisposable
{
    /// <summary>Headers beyond this are refused rather than parsed (the reference implementation's limit).</summary>
    const long MaxHeaderBytes = 100_000_000;
    const long CopyChunkBytes = 1L << 28;

    readonly MemoryMappedFile _map;
    readonly MemoryMappedViewAccessor _view;
    readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataStart,
        Dictionary<string, SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path; _map = map; _view = view; _dataStart = dataStart; Entries = entries; Metadata = metadata;
    }

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new CheckpointFormatException($"{path}: file not found.");
        byte[] header;
        long length;
        using (var stream = File.OpenRead(path))
        {
            // The open file's length, not FileInfo's: in a Hugging Face cache the path is a symlink to its blob.
            length = stream.Length;
            if (length < 8)
                throw new CheckpointFormatException($"{path}: truncated ({length} bytes; a safetensors file starts with an 8-byte header length).");
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            long headerLength = BitConverter.ToInt64(lengthBytes);
            if (headerLength < 0 || headerLength > MaxHeaderBytes)
                throw new CheckpointFormatException($"{path}: header length {headerLength} bytes is over the {MaxHeaderBytes / 1_000_000} MB limit (corrupt or not a safetensors file).");
            if (8 + headerLength > length)
                throw new CheckpointFormatException($"{path}: header length {headerLength} runs past the end of the file ({length} bytes): the file is truncated or not a safetensors file.");
            header = new byte[headerLength];
            stream.ReadExactly(header);
        }
        long dataStart = 8 + header.Length, dataLength = length - dataStart;
        var (entries, metadata) = ParseHeader(path, header, dataLength);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        return new SafetensorsFile(path, map, view, dataStart, entries, metadata);
    }

    static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new CheckpointFormatException($"{path}: the header is not valid JSON ({e.Message}).", e); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException($"{path}: the header is not a JSON object.");

        var entries = new Dictionary<string, SafetensorsEntry>();
        var metadata = new Dictionary<string, string>();
        foreach (var property in doc.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__")
            {
                foreach (var m in property.Value.EnumerateObject()) metadata[m.Name] = m.Value.ToString();
                continue;
            }
            entries[property.Name] = ParseEntry(path, property.Name, property.Value, dataLength);
        }
        // Byte ranges must not overlap: a corrupt header could otherwise alias two parameters.
        SafetensorsEntry? previous = null;
        foreach (var e in entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (previous != null && e.Begin < previous.End && e.End > e.Begin)
                throw new CheckpointFormatException($"{path}: tensor '{e.Key}' bytes [{e.Begin}, {e.End}) overlap '{previous.Key}' [{previous.Begin}, {previous.End}).");
            if (e.End > e.Begin) previous = e;
        }
        return (entries, metadata);
    }

    static SafetensorsEntry ParseEntry(string path, string key, JsonElement value, long dataLength)
    {
        try
        {
            string dtypeName = value.GetProperty("dtype").GetString() ?? "";
            var dtype = ParseDType(dtypeName) ?? throw new CheckpointFormatException($"{path}: tensor '{key}' has unsupported dtype '{dtypeName}'.");
            long[] shape = value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            long[] offsets = value.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
                throw new CheckpointFormatException($"{path}: tensor '{key}' has invalid data_offsets [{string.Join(", ", offsets)}].");
            var entry = new SafetensorsEntry(key, dtype, shape, offsets[0], offsets[1]);
            if (shape.Any(d => d < 0))
                throw new CheckpointFormatException($"{path}: tensor '{key}' has a negative dimension in shape [{string.Join(", ", shape)}].");
            long expected = entry.ElementCount * ElementSize(dtype);
            if (offsets[1] - offsets[0] != expected)
                throw new CheckpointFormatException($"{path}: tensor '{key}' ({dtypeName} [{string.Join(", ", shape)}]) needs {expected} bytes but its data_offsets span {offsets[1] - offsets[0]}.");
            if (offsets[1] > dataLength)
                throw new CheckpointFormatException($"{path}: tensor '{key}' bytes [{offsets[0]}, {offsets[1]}) overrun the data section ({dataLength} bytes): the file is truncated.");
            return entry;
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new CheckpointFormatException($"{path}: tensor '{key}' has a malformed header entry ({e.Message}).", e);
        }
    }

    static ScalarType? ParseDType(string name) => name switch
    {
        "F64" => ScalarType.Float64, "F32" => ScalarType.Float32, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool, _ => null,
    };

    internal static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    static string Kind(ScalarType dtype) => dtype switch
    {
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64 => "floating point",
        ScalarType.Bool => "boolean",
        _ => "integer",
    };

    /// <summary>The safetensors name of a dtype (F32, I32, …), as the file's header spells it.</summary>
    static string DTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 => "F64", ScalarType.Float32 => "F32", ScalarType.Float16 => "F16", ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64", ScalarType.Int32 => "I32", ScalarType.Int16 => "I16", ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8", ScalarType.Bool => "BOOL", _ => dtype.ToString(),
    };

    public bool Contains(string key) => Entries.ContainsKey(key);

    public SafetensorsEntry Entry(string key) =>
        Entries.TryGetValue(key, out var e) ? e : throw new CheckpointFormatException($"{Path}: no tensor '{key}'.");

    /// <summary>Reads a tensor into a new CPU tensor of its stored dtype, then converts to <paramref name="dtype"/>
    /// and moves to <paramref name="device"/> when given.</summary>
    public Tensor Read(string key, ScalarType? dtype = null, Device? device = null)
    {
        var entry = Entry(key);
        var cpu = torch.empty(entry.Shape, entry.DType);
        CopyBytes(entry, cpu);
        if ((dtype == null || dtype == entry.DType) && (device == null || device.type == DeviceType.CPU)) return cpu;
        using (cpu) return cpu.to(dtype ?? entry.DType, device ?? torch.CPU);
    }

    /// <summary>Copies a tensor into an existing one (a module parameter) of the same shape, converting dtype and
    /// device on the way. Conversions keep the kind of number: a float tensor may change precision (bf16 → f32), but an
    /// integer or boolean tensor stored where the module has floats (or the reverse) is refused, not converted.</summary>
    public void CopyInto(string key, Tensor destination)
    {
        var entry = Entry(key);
        if (!entry.Shape.SequenceEqual(destination.shape))
            throw new CheckpointFormatException($"{Path}: tensor '{key}' has shape [{string.Join(", ", entry.Shape)}] but the module expects [{string.Join(", ", destination.shape)}].");
        if (Kind(entry.DType) != Kind(destination.dtype))
            throw new CheckpointFormatException(
                $"{Path}: tensor '{key}' is stored as {DTypeName(entry.DType)} ({Kind(entry.DType)}) but the module expects {destination.dtype} ({Kind(destination.dtype)}); " +
                "the checkpoint was written wrongly or belongs to another model.");
        using var _ = torch.no_grad();
        if (destination.device_type == DeviceType.CPU && destination.dtype == entry.DType && destination.is_contiguous())
        {
            CopyBytes(entry, destination);
            return;
        }
        using var source = Read(key);
        destination.copy_(source);
    }

    unsafe void CopyBytes(SafetensorsEntry entry, Tensor destination)
    {
        long total = entry.End - entry.Begin;
        if (total == 0) return;
        byte* basePtr = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
        try
        {
            byte* source = basePtr + _view.PointerOffset + _dataStart + entry.Begin;
            // Span-based access to tensor memory is limited to 2 GB, so copy in chunks of a flat byte view.
            using var flat = destination.view(-1);
            long elementSize = ElementSize(entry.DType), chunkElements = Math.Max(1, CopyChunkBytes / elementSize);
            for (long start = 0; start < entry.ElementCount; start += chunkElements)
            {
                long count = Math.Min(chunkElements, entry.ElementCount - start);
                using var chunk = flat.narrow(0, start, count);
                new ReadOnlySpan<byte>(source + start * elementSize, checked((int)(count * elementSize))).CopyTo(chunk.bytes);
            }
        }
        finally { _view.SafeMemoryMappedViewHandle.ReleasePointer(); }
    }

    public void Dispose()
    {
        _view.Dispose();
        _map.Dispose();
    }
}
