namespace SpatialMllm.Research.Evaluation;

/// <summary>Paths built from dataset rows (<c>dataset</c>, <c>scene_name</c>, <c>scene_id</c>): a row may only name
/// files under the data folder; an absolute path or a <c>..</c> segment is refused with the row named.</summary>
internal static class DataPaths
{
    /// <summary><paramref name="root"/>/<paramref name="parts"/>…, checked to stay under <paramref name="root"/>.</summary>
    /// <param name="row">The row for the message, e.g. "question 1042".</param>
    public static string Under(string root, string row, params (string Field, string Value)[] parts)
    {
        foreach (var (field, value) in parts)
            if (value.Length == 0 || Path.IsPathRooted(value) || value.Contains('\0')
                || value.Split('/', '\\').Any(segment => segment is ".." or "."))
                throw new DataFileException(
                    $"{row}: {field} '{value}' is not a plain name under the data folder {root} (absolute paths and '..' are refused).");
        string fullRoot = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root)) + Path.DirectorySeparatorChar;
        string path = Path.GetFullPath(Path.Combine([fullRoot, .. parts.Select(p => p.Value)]));
        if (!path.StartsWith(fullRoot, StringComparison.Ordinal))
            throw new DataFileException($"{row}: {string.Join(", ", parts.Select(p => $"{p.Field} '{p.Value}'"))} leads outside the data folder {root}.");
        return path;
    }
}
