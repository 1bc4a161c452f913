using System.Text.Json;
using Parquet;
using Parquet.Schema;

namespace SpatialMllm.Research.Evaluation;

/// <summary>Reads VSI-Bench annotations from the HF test.jsonl or test-*.parquet, checking every row.</summary>
internal static class VsiBenchLoader
{
    /// <summary>The list of ids the debiasing removed, as the HF repository ships it beside the annotations.</summary>
    public const string PrunedIdsFileName = "pruned_ids.txt";

    public static IReadOnlyList<VsiBenchQuestion> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"VSI-Bench annotations not found: {path}", path);
        var questions = Path.GetExtension(path).Equals(".parquet", StringComparison.OrdinalIgnoreCase)
            ? LoadParquet(path)
            : LoadJsonLines(path);
        CheckUniqueIds(path, questions);
        return ApplyPrunedIdsFile(path, questions);
    }

    static List<VsiBenchQuestion> LoadJsonLines(string path)
    {
        var questions = new List<VsiBenchQuestion>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string where = $"line {lineNumber}";
            JsonElement row;
            try { row = JsonDocument.Parse(line).RootElement; }
            catch (JsonException e) { throw DataFileException.At(path, where, "not valid JSON: " + e.Message); }
            if (row.ValueKind != JsonValueKind.Object) throw DataFileException.At(path, where, "expected a JSON object");

            int id = row.TryGetProperty("id", out var idElement) && idElement.ValueKind == JsonValueKind.Number && idElement.TryGetInt32(out int i)
                ? i : throw DataFileException.At(path, where, "'id' is missing or not an integer");
            IReadOnlyList<string>? options = null;
            if (row.TryGetProperty("options", out var o) && o.ValueKind != JsonValueKind.Null)
            {
                if (o.ValueKind != JsonValueKind.Array || o.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
                    throw DataFileException.At(path, where, $"id {id}: 'options' must be a list of strings or null");
                options = [.. o.EnumerateArray().Select(e => e.GetString()!)];
            }
            bool? pruned = row.TryGetProperty("pruned", out var p) && p.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? p.GetBoolean() : null;
            questions.Add(Validate(path, where, id,
                StringField(row, "dataset"), StringField(row, "scene_name"), StringField(row, "question_type"),
                StringField(row, "question"), options, StringField(row, "ground_truth"), pruned));
        }
        return questions;
    }

    static string? StringField(JsonElement row, string name) =>
        row.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;

    static List<VsiBenchQuestion> LoadParquet(string path) => LoadParquetAsync(path).GetAwaiter().GetResult();

    static async Task<List<VsiBenchQuestion>> LoadParquetAsync(string path)
    {
        await using var reader = await ParquetReader.CreateAsync(path);
        var fields = reader.Schema.GetDataFields();
        DataField Field(string name) => fields.FirstOrDefault(f => f.Path.ToString() == name || f.Path.ToString().StartsWith(name + "/"))
            ?? throw DataFileException.At(path, "schema", $"column '{name}' is missing");
        var pruneField = fields.FirstOrDefault(f => f.Name == "pruned");

        var questions = new List<VsiBenchQuestion>();
        int rowBase = 0;
        for (int g = 0; g < reader.RowGroupCount; g++)
        {
            using var group = reader.OpenRowGroupReader(g);
            int rows = checked((int)group.RowCount);
            var ids = new long?[rows];
            await group.ReadAsync<long>(Field("id"), ids);
            async Task<string?[]> Strings(string name)
            {
                var values = new string?[rows];
                await group.ReadAsync(Field(name), values);
                return values;
            }
            var dataset = await Strings("dataset");
            var scene = await Strings("scene_name");
            var type = await Strings("question_type");
            var question = await Strings("question");
            var truth = await Strings("ground_truth");
            var options = await ReadStringLists(group, Field("options"), rows, path);
            var pruned = new bool?[rows];
            if (pruneField != null) await group.ReadAsync<bool>(pruneField, pruned);

            for (int r = 0; r < rows; r++)
            {
                string where = $"row {rowBase + r}";
                int id = ids[r] is long l && l is >= int.MinValue and <= int.MaxValue
                    ? (int)l : throw DataFileException.At(path, where, "'id' is missing or out of range");
                questions.Add(Validate(path, where, id, dataset[r], scene[r], type[r], question[r], options[r], truth[r], pruned[r]));
            }
            rowBase += rows;
        }
        return questions;
    }

    /// <summary>A list&lt;string&gt; column: the values come dense, the levels say where rows start (repetition 0)
    /// and whether a slot holds a value (definition = max) or a null/empty list.</summary>
    static async Task<IReadOnlyList<string>?[]> ReadStringLists(ParquetRowGroupReader group, DataField field, int rows, string path)
    {
        int slots = checked((int)group.GetMetadata(field)!.MetaData!.NumValues);
        var values = new ReadOnlyMemory<char>[slots];
        var definition = new int[slots];
        var repetition = new int[slots];
        await group.ReadRawAsync<ReadOnlyMemory<char>>(field, values, definition, repetition);
        var lists = new IReadOnlyList<string>?[rows];
        int row = -1, next = 0;
        List<string>? current = null;
        for (int s = 0; s < slots; s++)
        {
            if (repetition[s] == 0)
            {
                if (row >= 0) lists[row] = current;
                row++;
                current = null;
            }
            if (definition[s] == field.MaxDefinitionLevel) (current ??= []).Add(values[next++].ToString());
            else if (definition[s] == field.MaxDefinitionLevel - 1)
                throw DataFileException.At(path, $"row {row}", "'options' contains a null option");
            else if (definition[s] > 0) current ??= [];
        }
        if (row >= 0) lists[row] = current;
        if (row + 1 != rows) throw DataFileException.At(path, "column options", $"holds {row + 1} rows, the file says {rows}");
        return lists;
    }

    /// <summary>Every check a row must pass, so a bad row fails here with its position rather than later in scoring.</summary>
    static VsiBenchQuestion Validate(string path, string where, int id, string? dataset, string? scene, string? type,
        string? question, IReadOnlyList<string>? options, string? truth, bool? pruned)
    {
        string Required(string? value, string name) => string.IsNullOrEmpty(value)
            ? throw DataFileException.At(path, where, $"id {id}: '{name}' is missing or empty") : value;
        string t = Required(type, "question_type");
        if (!VsiBenchQuestionTypes.IsKnown(t)) throw DataFileException.At(path, where, $"id {id}: unknown question_type '{t}'");
        string gt = Required(truth, "ground_truth");
        if (VsiBenchQuestionTypes.IsMultipleChoice(t))
        {
            if (options is null || options.Count < 2) throw DataFileException.At(path, where, $"id {id}: a {t} question needs at least two options");
            if (gt.Length != 1 || gt[0] < 'A' || gt[0] >= 'A' + options.Count)
                throw DataFileException.At(path, where, $"id {id}: ground_truth '{gt}' is not one of the option letters");
        }
        else
        {
            if (options is { Count: > 0 }) throw DataFileException.At(path, where, $"id {id}: a numeric {t} question must not have options");
            if (!PythonText.TryParseFloat(gt, out double value) || !double.IsFinite(value) || value == 0)
                throw DataFileException.At(path, where, $"id {id}: ground_truth '{gt}' is not a non-zero number (MRA divides by it)");
        }
        return new VsiBenchQuestion(id, Required(dataset, "dataset"), Required(scene, "scene_name"), t,
            Required(question, "question"), VsiBenchQuestionTypes.IsMultipleChoice(t) ? options : null, gt, pruned);
    }

    static void CheckUniqueIds(string path, IReadOnlyList<VsiBenchQuestion> questions)
    {
        var duplicates = questions.GroupBy(q => q.Id).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        if (duplicates.Count > 0)
            throw new DataFileException($"{path}: {duplicates.Count} duplicate id(s), e.g. {string.Join(", ", duplicates.Take(5))}");
    }

    /// <summary>The questions listed in <paramref name="idsPath"/> (one id a line) are debiased, every other one pruned.
    /// An id that is not in the annotations is an error: the list is for another version of the benchmark.</summary>
    public static IReadOnlyList<VsiBenchQuestion> ApplyDebiasedIds(string idsPath, IReadOnlyList<VsiBenchQuestion> questions)
    {
        var kept = ReadIds(idsPath);
        var known = questions.Select(q => q.Id).ToHashSet();
        var unknown = kept.Where(id => !known.Contains(id)).Take(5).ToList();
        if (unknown.Count > 0)
            throw new DataFileException($"{idsPath}: id(s) not in the annotations, e.g. {string.Join(", ", unknown)}");
        return [.. questions.Select(q => q with { Pruned = !kept.Contains(q.Id) })];
    }

    static HashSet<int> ReadIds(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"id list not found: {path}", path);
        var ids = new HashSet<int>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            if (!int.TryParse(line.Trim(), out int id)) throw DataFileException.At(path, $"line {lineNumber}", $"'{line.Trim()}' is not an id");
            ids.Add(id);
        }
        return ids;
    }

    /// <summary>Rows without a `pruned` column take it from pruned_ids.txt beside the file, when there is one.</summary>
    static IReadOnlyList<VsiBenchQuestion> ApplyPrunedIdsFile(string path, IReadOnlyList<VsiBenchQuestion> questions)
    {
        string prunedPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, PrunedIdsFileName);
        if (questions.All(q => q.Pruned.HasValue) || !File.Exists(prunedPath)) return questions;
        var pruned = ReadIds(prunedPath);
        return [.. questions.Select(q => q.Pruned.HasValue ? q : q with { Pruned = pruned.Contains(q.Id) })];
    }
}
