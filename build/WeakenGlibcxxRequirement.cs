#nullable disable
using System;
using System.IO;
using System.Linq;
using System.Text;
#if !SPATIAL_MLLM_LIBRARY
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

/// <summary>
/// The MSBuild task over <see cref="GlibcxxRequirement"/>: marks one GLIBCXX version requirement of the build or
/// publish output's copy of a library weak when the system's libstdc++ lacks that version. Idempotent.
/// </summary>
public class WeakenGlibcxxRequirement : Task
{
    [Required] public string Library { get; set; }
    [Required] public string Version { get; set; }

    public override bool Execute()
    {
        string systemLib = GlibcxxRequirement.FindSystemLibStdCxx();
        if (GlibcxxRequirement.SystemHas(Version))
        {
            Log.LogMessage(MessageImportance.Low, systemLib + " has " + Version + ": " + Library + " left as shipped.");
            return true;
        }
        try
        {
            if (GlibcxxRequirement.Weaken(Library, Version))
                Log.LogMessage(MessageImportance.High, "Marked " + Version + " weak in " + Library +
                    " (system libstdc++ " + (systemLib ?? "not found") + " lacks it).");
            return true;
        }
        catch (InvalidDataException e)
        {
            Log.LogError(e.Message);
            return false;
        }
    }
}
#endif

/// <summary>
/// Marks one GLIBCXX version requirement of an ELF64 shared library weak (VER_FLG_WEAK in .gnu.version_r), so that
/// the dynamic loader accepts a libstdc++ that lacks it. Used at build time by the task above (this file is its
/// source, compiled by RoslynCodeTaskFactory) and at run time by the library (compiled into it with
/// SPATIAL_MLLM_LIBRARY), for notebooks that load TorchSharp from the NuGet cache.
/// </summary>
internal static class GlibcxxRequirement
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    /// <summary>Whether the system's libstdc++ provides <paramref name="version"/> (false when none is found).</summary>
    public static bool SystemHas(string version)
    {
        string systemLib = FindSystemLibStdCxx();
        return systemLib != null && ContainsVersion(File.ReadAllBytes(systemLib), version);
    }

    /// <summary>Marks <paramref name="version"/> weak in <paramref name="library"/>; true when the file was changed.</summary>
    public static bool Weaken(string library, string version)
    {
        byte[] elf = File.ReadAllBytes(library);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[4] != 2)
            throw new InvalidDataException(library + " is not an ELF64 file; cannot weaken its " + version + " requirement.");
        long shoff = BitConverter.ToInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int s = 0; s < shnum; s++)
        {
            long sh = shoff + (long)s * shentsize;
            if (BitConverter.ToUInt32(elf, (int)sh + 4) != ShtGnuVerneed) continue;
            long offset = BitConverter.ToInt64(elf, (int)sh + 0x18);
            int link = BitConverter.ToInt32(elf, (int)sh + 0x28), count = BitConverter.ToInt32(elf, (int)sh + 0x2C);
            long strtab = BitConverter.ToInt64(elf, (int)(shoff + (long)link * shentsize) + 0x18);
            long vn = offset;
            for (int n = 0; n < count; n++)
            {
                int auxCount = BitConverter.ToUInt16(elf, (int)vn + 2);
                long aux = vn + BitConverter.ToUInt32(elf, (int)vn + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    int flagsAt = (int)aux + 4;
                    string name = ReadString(elf, strtab + BitConverter.ToUInt32(elf, (int)aux + 8));
                    ushort flags = BitConverter.ToUInt16(elf, flagsAt);
                    if (name == version && (flags & VerFlgWeak) == 0)
                    {
                        BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(elf, flagsAt);
                        File.WriteAllBytes(library, elf);
                        return true;
                    }
                    aux += BitConverter.ToUInt32(elf, (int)aux + 12);
                }
                vn += BitConverter.ToUInt32(elf, (int)vn + 12);
            }
        }
        return false;
    }

    static string ReadString(byte[] bytes, long at)
    {
        int end = Array.IndexOf(bytes, (byte)0, (int)at);
        return Encoding.ASCII.GetString(bytes, (int)at, end - (int)at);
    }

    static bool ContainsVersion(byte[] bytes, string version)
    {
        byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
        for (int i = 0; i + needle.Length <= bytes.Length; i++)
        {
            if (bytes[i] != needle[0]) continue;
            int j = 1;
            while (j < needle.Length && bytes[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }

    public static string FindSystemLibStdCxx()
    {
        string[] candidates =
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
        };
        return candidates.FirstOrDefault(File.Exists);
    }
}
