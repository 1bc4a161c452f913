using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Text;

/// <summary>
/// Stop-gap reader of the fixture's io.safetensors (F32, U8, I64 only) until Checkpoints/SafetensorsFile
/// lands on main; replace its uses with SafetensorsFile.Open(path).Read(name) then.
/// </summary>
internal static class FixtureTensors
{
    public static string IoPath => Path.Combine(TestPaths.TinyFixture, "io.safetensors");

    public static Tensor Read(string name)
    {
        byte[] file = File.ReadAllBytes(IoPath);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(file);
        using var header = JsonDocument.Parse(file.AsMemory(8, (int)headerLength));
        var entry = header.RootElement.GetProperty(name);
        long[] shape = entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var offsets = entry.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var bytes = file.AsSpan((int)(8 + headerLength + offsets[0]), (int)(offsets[1] - offsets[0]));
        return entry.GetProperty("dtype").GetString() switch
        {
            "F32" => tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray(), shape),
            "I64" => tensor(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes).ToArray(), shape),
            "U8" => tensor(bytes.ToArray(), shape),
            var d => throw new NotSupportedException($"dtype {d} of {name}"),
        };
    }
}
