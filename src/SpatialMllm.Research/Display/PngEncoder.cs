using System.Buffers.Binary;
using System.IO.Compression;

namespace SpatialMllm.Research.Display;

/// <summary>
/// A minimal PNG writer: 8-bit RGB, one zlib-compressed IDAT, each row filtered with whichever of None, Sub, Up or
/// Paeth gives the smallest sum of absolute values (libpng's heuristic; it shrinks video frames several-fold, which
/// matters because frames are embedded in saved notebooks). Written here because System.Drawing is Windows-only and
/// an image library would be a dependency for a few thumbnails.
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
        using (var zlib = new ZLibStream(scanlines, CompressionLevel.Optimal, leaveOpen: true))
        {
            int stride = width * 3;
            var candidates = new byte[4][];
            for (int f = 0; f < 4; f++) candidates[f] = new byte[stride];
            for (int y = 0; y < height; y++)
            {
                var row = rgb.Slice(y * stride, stride);
                var above = y > 0 ? rgb.Slice((y - 1) * stride, stride) : new byte[stride];
                int best = 0;
                long bestCost = long.MaxValue;
                for (int f = 0; f < 4; f++)
                {
                    long cost = Filter(f, row, above, candidates[f]);
                    if (cost < bestCost) (best, bestCost) = (f, cost);
                }
                zlib.WriteByte(FilterTypes[best]);
                zlib.Write(candidates[best]);
            }
        }

        var png = new MemoryStream();
        png.Write(Signature);
        WriteChunk(png, "IHDR"u8, header);
        WriteChunk(png, "IDAT"u8, scanlines.GetBuffer().AsSpan(0, (int)scanlines.Length));
        WriteChunk(png, "IEND"u8, []);
        return png.ToArray();
    }

    /// <summary>PNG filter type bytes for the candidates tried: None, Sub, Up, Paeth.</summary>
    static readonly byte[] FilterTypes = [0, 1, 2, 4];

    /// <summary>Filters one row into <paramref name="output"/>; returns the sum of the outputs as signed bytes' magnitudes.</summary>
    static long Filter(int candidate, ReadOnlySpan<byte> row, ReadOnlySpan<byte> above, Span<byte> output)
    {
        long cost = 0;
        for (int i = 0; i < row.Length; i++)
        {
            int left = i >= 3 ? row[i - 3] : 0, up = above[i], upLeft = i >= 3 ? above[i - 3] : 0;
            int predicted = candidate switch { 0 => 0, 1 => left, 2 => up, _ => Paeth(left, up, upLeft) };
            byte value = (byte)(row[i] - predicted);
            output[i] = value;
            cost += value < 128 ? value : 256 - value;
        }
        return cost;
    }

    static int Paeth(int left, int up, int upLeft)
    {
        int p = left + up - upLeft;
        int toLeft = Math.Abs(p - left), toUp = Math.Abs(p - up), toUpLeft = Math.Abs(p - upLeft);
        return toLeft <= toUp && toLeft <= toUpLeft ? left : toUp <= toUpLeft ? up : upLeft;
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
