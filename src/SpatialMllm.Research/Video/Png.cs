using System.Buffers.Binary;
using System.IO.Compression;

namespace SpatialMllm.Research.Video;

/// <summary>
/// The PNG codec for the common case, in managed code, so frame folders need no ffmpeg: decodes 8-bit RGB and RGBA
/// (alpha dropped), non-interlaced, with PNG's five row filters; encodes 8-bit RGB. Lossless, so a decoded frame is
/// exactly what ffmpeg's PNG decoder gives. Other kinds (16-bit, palette, grey, interlaced) are left to ffmpeg
/// (<see cref="Header.IsManagedDecodable"/>). Chunk CRCs are checked: a damaged file is an error naming it, not wrong
/// pixels. Written here, not taken from a library: System.Drawing is Windows-only, ImageSharp is heavy with a licence
/// question, and the one small PNG package served (BigGustave) reads pixel by pixel through a struct per call.
/// </summary>
internal static class Png
{
    static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
    static readonly uint[] CrcTable = BuildCrcTable();

    const byte ColourRgb = 2, ColourRgba = 6;

    /// <summary>The IHDR fields that decide whether <see cref="DecodeRgb"/> reads a file.</summary>
    public readonly record struct Header(int Width, int Height, byte BitDepth, byte ColourType, byte Interlace)
    {
        public bool IsManagedDecodable => BitDepth == 8 && ColourType is ColourRgb or ColourRgba && Interlace == 0;
    }

    /// <summary>Signature and IHDR from the first 33 bytes; anything else is not a PNG.</summary>
    public static Header ReadHeader(string file)
    {
        Span<byte> head = stackalloc byte[33];
        using (var stream = File.OpenRead(file))
            if (stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length
                || !head[..8].SequenceEqual(Signature) || !head[12..16].SequenceEqual("IHDR"u8))
                throw new VideoReadException(file, "is not a PNG file");
        int width = BinaryPrimitives.ReadInt32BigEndian(head[16..20]), height = BinaryPrimitives.ReadInt32BigEndian(head[20..24]);
        if (width <= 0 || height <= 0) throw new VideoReadException(file, $"is not a valid PNG: size {width}x{height}");
        return new Header(width, height, head[24], head[25], head[28]);
    }

    /// <summary>Decodes an 8-bit RGB or RGBA non-interlaced PNG into <paramref name="rgb"/> (width·height·3 bytes, alpha dropped).</summary>
    public static void DecodeRgb(string file, Span<byte> rgb)
    {
        byte[] bytes = File.ReadAllBytes(file);
        Header header = default;
        using var idat = new MemoryStream();
        int at = 8;
        bool ended = false;
        if (bytes.Length < 8 || !bytes.AsSpan(0, 8).SequenceEqual(Signature)) throw new VideoReadException(file, "is not a PNG file");
        while (!ended)
        {
            if (at + 12 > bytes.Length) throw new VideoReadException(file, "is truncated (no IEND chunk)");
            int length = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(at));
            if (length < 0 || at + 12L + length > bytes.Length) throw new VideoReadException(file, $"is truncated (a chunk at byte {at} runs past the end)");
            var type = bytes.AsSpan(at + 4, 4);
            var data = bytes.AsSpan(at + 8, length);
            if ((Crc(0xFFFFFFFFu, bytes.AsSpan(at + 4, 4 + length)) ^ 0xFFFFFFFFu) != BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(at + 8 + length)))
                throw new VideoReadException(file, $"is damaged: the CRC of its {System.Text.Encoding.ASCII.GetString(type)} chunk at byte {at} does not match");
            if (type.SequenceEqual("IHDR"u8))
            {
                if (length != 13) throw new VideoReadException(file, "is not a valid PNG: IHDR is not 13 bytes");
                header = new Header(BinaryPrimitives.ReadInt32BigEndian(data), BinaryPrimitives.ReadInt32BigEndian(data[4..]), data[8], data[9], data[12]);
            }
            else if (type.SequenceEqual("IDAT"u8)) idat.Write(data);
            else if (type.SequenceEqual("IEND"u8)) ended = true;
            else if ((type[0] & 0x20) == 0 && !type.SequenceEqual("PLTE"u8))
                throw new VideoReadException(file, $"has a critical chunk {System.Text.Encoding.ASCII.GetString(type)} this decoder does not know");
            at += 12 + length;
        }
        if (!header.IsManagedDecodable)
            throw new VideoReadException(file, $"is a PNG of bit depth {header.BitDepth}, colour type {header.ColourType}, interlace {header.Interlace}: only 8-bit RGB/RGBA non-interlaced is decoded here");
        if (rgb.Length != (long)header.Width * header.Height * 3)
            throw new VideoReadException(file, $"is {header.Width}x{header.Height}, not the size expected");

        int channels = header.ColourType == ColourRgba ? 4 : 3, stride = header.Width * channels;
        byte[] previous = new byte[stride], current = new byte[stride];
        idat.Position = 0;
        using var inflated = new ZLibStream(idat, CompressionMode.Decompress);
        try
        {
            for (int y = 0; y < header.Height; y++)
            {
                int filter = inflated.ReadByte();
                if (filter < 0 || inflated.ReadAtLeast(current, stride, throwOnEndOfStream: false) < stride)
                    throw new VideoReadException(file, $"is truncated: its image data ends at row {y} of {header.Height}");
                Unfilter(file, filter, current, previous, channels);
                var row = rgb.Slice(y * header.Width * 3, header.Width * 3);
                if (channels == 3) current.CopyTo(row);
                else
                    for (int x = 0; x < header.Width; x++)
                        (row[3 * x], row[3 * x + 1], row[3 * x + 2]) = (current[4 * x], current[4 * x + 1], current[4 * x + 2]);
                (previous, current) = (current, previous);
            }
        }
        catch (InvalidDataException e)
        {
            throw new VideoReadException(file, $"is damaged: its image data does not inflate ({e.Message})");
        }
    }

    /// <summary>Undoes a row's filter in place (PNG spec §9: None, Sub, Up, Average, Paeth), bytes-per-pixel <paramref name="bpp"/>.</summary>
    static void Unfilter(string file, int filter, Span<byte> row, ReadOnlySpan<byte> above, int bpp)
    {
        switch (filter)
        {
            case 0: break;
            case 1: for (int i = bpp; i < row.Length; i++) row[i] += row[i - bpp]; break;
            case 2: for (int i = 0; i < row.Length; i++) row[i] += above[i]; break;
            case 3:
                for (int i = 0; i < row.Length; i++) row[i] += (byte)(((i >= bpp ? row[i - bpp] : 0) + above[i]) >> 1);
                break;
            case 4:
                for (int i = 0; i < row.Length; i++)
                    row[i] += (byte)(i >= bpp ? Paeth(row[i - bpp], above[i], above[i - bpp]) : above[i]);
                break;
            default: throw new VideoReadException(file, $"is damaged: row filter {filter} is not one of PNG's 0-4");
        }
    }

    /// <summary>
    /// Encodes interleaved RGB pixels (row-major, <c>height × width × 3</c> bytes) as an 8-bit RGB PNG, one zlib-compressed
    /// IDAT, each row filtered with whichever of None, Sub, Up or Paeth gives the smallest sum of absolute values
    /// (libpng's heuristic; it shrinks video frames several-fold).
    /// </summary>
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
