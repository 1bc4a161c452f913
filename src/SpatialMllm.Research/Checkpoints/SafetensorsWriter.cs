using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Checkpoints;

/// <summary>Writes tensors in the safetensors format (keys sorted, 8-byte aligned header, as the reference writer).</summary>
internal static class SafetensorsWriter
{
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var ordered = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>();
        if (metadata != null) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (key, tensor) in ordered)
        {
            long bytes = tensor.NumberOfElements * SafetensorsFile.ElementSize(tensor.dtype);
            header[key] = new { dtype = DTypeName(tensor.dtype), shape = tensor.shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        byte[] json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padding = (8 - json.Length % 8) % 8;
        using var stream = File.Create(path);
        stream.Write(BitConverter.GetBytes((long)(json.Length + padding)));
        stream.Write(json);
        stream.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
        foreach (var (_, tensor) in ordered)
        {
            using var cpu = tensor.detach().cpu().contiguous();
            using var flat = cpu.view(-1);
            const long chunk = 1L << 26;
            for (long start = 0; start < flat.NumberOfElements; start += chunk)
            {
                using var part = flat.narrow(0, start, Math.Min(chunk, flat.NumberOfElements - start));
                stream.Write(part.bytes);
            }
        }
    }

    static string DTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 => "F64", ScalarType.Float32 => "F32", ScalarType.Float16 => "F16", ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64", ScalarType.Int32 => "I32", ScalarType.Int16 => "I16", ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8", ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"safetensors has no dtype for {dtype}."),
    };
}
