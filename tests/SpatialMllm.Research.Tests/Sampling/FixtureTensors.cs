using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Sampling;

/// <summary>
/// Stand-in reader for the fixtures' safetensors (8-byte little-endian header length, JSON header, raw
/// little-endian data; F32 and I64 only) until Checkpoints/SafetensorsFile lands on main; the lead
/// replaces its uses with <c>SafetensorsFile.Open(path).Read(name)</c> when merging.
/// </summary>
internal static class FixtureTensors
{
    public static Tensor Read(string path, string name)
    {
        using var stream = File.OpenRead(path);
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        byte[] headerBytes = new byte[checked((int)BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes))];
        stream.ReadExactly(headerBytes);
        using var header = JsonDocument.Parse(headerBytes);
        if (!header.RootElement.TryGetProperty(name, out JsonElement entry))
            throw new KeyNotFoundException($"{path} has no tensor '{name}'");

        long[] shape = entry.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
        long begin = entry.GetProperty("data_offsets")[0].GetInt64();
        long end = entry.GetProperty("data_offsets")[1].GetInt64();
        byte[] data = new byte[end - begin];
        stream.Position = 8 + headerBytes.Length + begin;
        stream.ReadExactly(data);

        return entry.GetProperty("dtype").GetString() switch
        {
            "F32" => torch.tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data).ToArray(), shape),
            "I64" => torch.tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(data).ToArray(), shape),
            var other => throw new NotSupportedException($"{name}: dtype {other} is not read by this stand-in"),
        };
    }
}
