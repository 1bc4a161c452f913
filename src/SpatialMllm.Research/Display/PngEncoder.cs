using System.Buffers.Binary;
using System.IO.Compression;

namespace SpatialMllm.Research.Display;

/// <summary>
/// The smallest PNG writer that browsers accept: 8-bit RGB, no filtering, one zlib-compressed IDAT. Written here
/// because System.Drawing is Windows-only and an image library would be a dependency for a few thumbnails.
/// </summary>
internal static class PngEncoder
{
    static readonly byte[] Signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
    static readonly uint[] CrcTable = BuildCrcTable();

    /// <summary>Encodes interleaved RGB pixels (row-major, <c>height × width × 3</c> bytes).</summary>
    public static byte[] EncodeRgb(ReadOnlySpan<byte> rgb, int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"Image size {width}×{height} is empty.");
        if (rgb.Length != width * height * 3)
            throw new ArgumentException($"Expected {width * height * 3} bytes for {width}×{height} RGB, got {rgb.Length}.");

        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8; // bits per channel
        header[9] = 2; // colour type: truecolour RGB
        // compression, filter method and interlace stay 0

        var scanlines = new MemoryStream();
        using (var zlib = new ZLibStream(scanlines, CompressionLevel.Fastest, leaveOpen: true))
        {
            int stride = width * 3;
            for (int y = 0; y < height; y++)
            {
                zlib.WriteByte(0); // filter type None for this row
                zlib.Write(rgb.Slice(y * stride, stride));
            }
        }

        var png = new MemoryStream();
        png.Write(Signature);
        WriteChunk(png, "IHDR"u8, header);
        WriteChunk(png, "IDAT"u8, scanlines.GetBuffer().AsSpan(0, (int)scanlines.Length));
        WriteChunk(png, "IEND"u8, []);
        return png.ToArray();
    }

    static void WriteChunk(Stream png, ReadOnlySpan<byte> type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        png.Write(word);
        png.Write(type);
        png.Write(data);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc(Crc(0xFFFFFFFFu, type), data) ^ 0xFFFFFFFFu);
        png.Write(word);
    }

    /// <summary>CRC-32 (ISO 3309, as PNG specifies) continued over <paramref name="bytes"/>.</summary>
    static uint Crc(uint crc, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}
