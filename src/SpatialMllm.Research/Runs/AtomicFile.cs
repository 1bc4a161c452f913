namespace SpatialMllm.Research.Runs;

/// <summary>Files written whole or not at all: written beside under a temporary name and renamed over the target, so a
/// kill mid-write leaves the previous file (or none), never a torn one under the final name.</summary>
internal static class AtomicFile
{
    /// <summary>Calls <paramref name="writeTo"/> with the temporary path, then renames it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<string> writeTo)
    {
        string temporary = path + ".partial";
        try
        {
            writeTo(temporary);
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temporary); }
            catch (IOException) { }   // the folder itself may be missing: the original error says why
            throw;
        }
    }

    public static void WriteAllText(string path, string text) => Write(path, temporary => File.WriteAllText(temporary, text));

    public static void Copy(string source, string path) => Write(path, temporary => File.Copy(source, temporary, overwrite: true));
}
