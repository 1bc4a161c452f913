using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace SpatialMllm.Research.Text;

/// <summary>
/// The Qwen2 / Qwen2.5-VL byte-level BPE tokenizer, read from a model folder (vocab.json, merges.txt,
/// added_tokens.json and/or tokenizer_config.json) and run by Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/>.
/// </summary>
/// <remarks>
/// What the library does: byte-level BPE with the merge ranks, id/token maps, byte-level decoding.
/// What is done here by hand, because Microsoft.ML.Tokenizers 2.0.1 cannot:
/// <list type="bullet">
/// <item>reading the Hugging Face files (there is no loader for Qwen2's tokenizer files: CodeGenTokenizer
/// rejects a vocab.json without the added tokens and brings GPT-2's digit grouping);</item>
/// <item>NFC (<see cref="NfcNormalizer"/>) and the pre-tokenizer (<see cref="Qwen2PreTokenizer"/>:
/// the library's RegexPreTokenizer matches on UTF-16 units, not code points);</item>
/// <item>skip_special_tokens: the library's <c>considerSpecialTokens: false</c> drops every added token,
/// but Hugging Face keeps the added tokens that are not special (&lt;tool_call&gt;, the fim tokens).</item>
/// </list>
/// </remarks>
public sealed class Qwen2Tokenizer
{
    const string VocabFile = "vocab.json";
    const string MergesFile = "merges.txt";
    const string AddedTokensFile = "added_tokens.json";
    const string TokenizerConfigFile = "tokenizer_config.json";

    // Added tokens that Qwen2.5(-VL)'s tokenizer_config.json marks special=false. Used only when a
    // folder has no tokenizer_config.json to say so (added_tokens.json carries no special flag).
    static readonly HashSet<string> QwenNonSpecialAddedTokens =
    [
        "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
        "<|repo_name|>", "<|file_sep|>",
    ];

    readonly BpeTokenizer _bpe;
    readonly Dictionary<string, int> _addedTokens;
    readonly Dictionary<int, string> _tokensById; // vocabulary and added tokens
    readonly HashSet<int> _specialIds;

    Qwen2Tokenizer(BpeTokenizer bpe, Dictionary<string, int> addedTokens, HashSet<int> specialIds)
    {
        _bpe = bpe;
        _addedTokens = addedTokens;
        _tokensById = bpe.Vocabulary.ToDictionary(kv => kv.Value, kv => kv.Key);
        foreach (var (token, id) in addedTokens) _tokensById[id] = token;
        _specialIds = specialIds;
        VocabularySize = _tokensById.Keys.Max() + 1;
    }

    /// <summary>Added tokens (never split when encoding), special or not.</summary>
    public IReadOnlyDictionary<string, int> AddedTokens => _addedTokens;

    /// <summary>One more than the largest id the tokenizer knows (151665 for Qwen2.5-VL; the model's
    /// embedding table is larger).</summary>
    public int VocabularySize { get; }

    /// <summary>Reads the tokenizer files of a model folder.</summary>
    /// <exception cref="FileNotFoundException">vocab.json or merges.txt is missing, or neither
    /// added_tokens.json nor tokenizer_config.json is there.</exception>
    /// <exception cref="InvalidDataException">A tokenizer file is malformed (the message names it).</exception>
    public static Qwen2Tokenizer FromFolder(string modelFolder)
    {
        if (!Directory.Exists(modelFolder))
            throw new DirectoryNotFoundException($"Tokenizer folder not found: {modelFolder}");
        string vocabPath = RequireFile(modelFolder, VocabFile);
        string mergesPath = RequireFile(modelFolder, MergesFile);
        string addedPath = Path.Combine(modelFolder, AddedTokensFile);
        string configPath = Path.Combine(modelFolder, TokenizerConfigFile);
        if (!File.Exists(addedPath) && !File.Exists(configPath))
            throw new FileNotFoundException(
                $"Neither {AddedTokensFile} nor {TokenizerConfigFile} found in {modelFolder}: without one of them " +
                "the chat and vision special tokens are unknown.", addedPath);

        var vocab = ReadStringToIntJson(vocabPath);
        var merges = ReadMerges(mergesPath);
        var added = File.Exists(addedPath) ? ReadStringToIntJson(addedPath) : [];
        var declaredSpecial = File.Exists(configPath) ? ReadAddedTokensDecoder(configPath, added) : null;

        foreach (var (token, id) in added)
        {
            if (vocab.TryGetValue(token, out int vocabId) && vocabId != id)
                throw new InvalidDataException($"Added token {token} has id {id}, but {vocabPath} gives it {vocabId}.");
        }
        var vocabIds = vocab.Values.ToHashSet();
        foreach (var (token, id) in added)
        {
            if (!vocab.ContainsKey(token) && vocabIds.Contains(id))
                throw new InvalidDataException($"Added token {token} reuses id {id}, which {vocabPath} already gives to another token.");
        }

        var specialIds = declaredSpecial
            ?? added.Where(kv => !QwenNonSpecialAddedTokens.Contains(kv.Key)).Select(kv => kv.Value).ToHashSet();

        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            SpecialTokens = added,
            ByteLevel = true,
            Normalizer = NfcNormalizer.Instance,
            PreTokenizer = new Qwen2PreTokenizer(added.Keys),
        };
        return new Qwen2Tokenizer(BpeTokenizer.Create(options), added, specialIds);
    }

    /// <summary>Token ids of <paramref name="text"/>; added tokens written in the text become their ids.
    /// No BOS/EOS is added (Qwen2 has none).</summary>
    public IReadOnlyList<int> Encode(string text) => _bpe.EncodeToIds(text);

    /// <summary>The text of <paramref name="ids"/>. Invalid UTF-8 (a cut multi-byte character) becomes
    /// U+FFFD as with errors="replace"; ids the tokenizer does not know are skipped.</summary>
    /// <param name="skipSpecialTokens">Drop the special tokens (&lt;|im_end|&gt;, &lt;|video_pad|&gt;, …)
    /// but keep the added tokens that are not special, as Hugging Face does.</param>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false) =>
        _bpe.Decode(ids.Where(id => _tokensById.ContainsKey(id) && !(skipSpecialTokens && _specialIds.Contains(id))), considerSpecialTokens: true);

    /// <summary>The id of a vocabulary or added token in its stored form (byte-level: " world" is "Ġworld"), or null.</summary>
    public int? TokenToId(string token) =>
        _addedTokens.TryGetValue(token, out int id) ? id
        : _bpe.Vocabulary.TryGetValue(token, out id) ? id
        : null;

    /// <summary>The stored form of the token with this id, or null.</summary>
    public string? IdToToken(int id) => _tokensById.GetValueOrDefault(id);

    /// <summary>The id of an added token by name, e.g. <see cref="QwenSpecialTokens.VideoPad"/>.</summary>
    /// <exception cref="KeyNotFoundException">The tokenizer has no such added token.</exception>
    public int SpecialTokenId(string name) =>
        _addedTokens.TryGetValue(name, out int id) ? id
        : throw new KeyNotFoundException($"The tokenizer has no added token {name}.");

    /// <summary>Whether <paramref name="id"/> is a special token (skipped by skip_special_tokens).</summary>
    public bool IsSpecial(int id) => _specialIds.Contains(id);

    static string RequireFile(string folder, string name)
    {
        string path = Path.Combine(folder, name);
        return File.Exists(path) ? path : throw new FileNotFoundException($"Tokenizer file {name} not found in {folder}.", path);
    }

    static Dictionary<string, int> ReadStringToIntJson(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return JsonSerializer.Deserialize<Dictionary<string, int>>(stream)
                ?? throw new InvalidDataException($"{path}: expected a JSON object of token → id, got null.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a JSON object of token → id ({e.Message}).", e);
        }
    }

    /// <summary>merges.txt: an optional "#version" line, then one "left right" pair per line, by rank.</summary>
    static List<string> ReadMerges(string path)
    {
        var merges = new List<string>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Length == 0) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
                throw new InvalidDataException($"{path}, line {lineNumber}: expected \"left right\", got \"{line}\".");
            merges.Add(line);
        }
        if (merges.Count == 0) throw new InvalidDataException($"{path}: no merges.");
        return merges;
    }

    /// <summary>Reads added_tokens_decoder ({"151643": {"content": "…", "special": true}, …}): adds its
    /// tokens to <paramref name="added"/> and returns the ids marked special (null: the file has none).</summary>
    static HashSet<int>? ReadAddedTokensDecoder(string path, Dictionary<string, int> added)
    {
        var special = new HashSet<int>();
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (!doc.RootElement.TryGetProperty("added_tokens_decoder", out var decoder)) return null;
            foreach (var entry in decoder.EnumerateObject())
            {
                int id = int.Parse(entry.Name, System.Globalization.CultureInfo.InvariantCulture);
                string content = entry.Value.GetProperty("content").GetString()
                    ?? throw new InvalidDataException($"{path}: added token {id} has no content.");
                if (added.TryGetValue(content, out int other) && other != id)
                    throw new InvalidDataException($"{path}: {content} has id {id}, but {AddedTokensFile} gives {other}.");
                added[content] = id;
                if (entry.Value.TryGetProperty("special", out var s) && s.GetBoolean()) special.Add(id);
            }
            return special;
        }
        catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: malformed added_tokens_decoder ({e.Message}).", e);
        }
    }
}
