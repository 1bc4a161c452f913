using SpatialMllm.Research.Text;

namespace SpatialMllm.Research.Tests.Text;

public class Qwen2TokenizerTests
{
    static readonly string ModelFolder = Path.Combine(TestPaths.Data, "qwen2.5-vl-3b");
    static readonly Lazy<Qwen2Tokenizer> Shared = new(() => Qwen2Tokenizer.FromFolder(ModelFolder));
    static Qwen2Tokenizer Tokenizer => Shared.Value;

    /// <summary>llama.cpp's qwen2 cases: texts separated by "\n__ggml_vocab_test__\n" (the file ends with
    /// one), one line of expected ids per text.</summary>
    public static TheoryData<int> LlamaCppCaseIndices()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < LlamaCppCases.Value.Count; i++) data.Add(i);
        return data;
    }

    static readonly Lazy<List<(string Text, int[] Ids)>> LlamaCppCases = new(() =>
    {
        string dir = Path.Combine(TestPaths.Data, "tokenizer-tests");
        string inp = File.ReadAllText(Path.Combine(dir, "ggml-vocab-qwen2.gguf.inp"));
        var texts = inp.Split("\n__ggml_vocab_test__\n").ToList();
        Assert.Equal("", texts[^1]);
        texts.RemoveAt(texts.Count - 1);
        var lines = File.ReadAllText(Path.Combine(dir, "ggml-vocab-qwen2.gguf.out")).Split('\n');
        return texts.Select((t, i) => (t, lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    });

    [Fact]
    public void LlamaCpp_file_has_46_cases() => Assert.Equal(46, LlamaCppCases.Value.Count);

    [Theory]
    [MemberData(nameof(LlamaCppCaseIndices))]
    public void Encodes_llama_cpp_case_exactly_and_decodes_back(int index)
    {
        var (text, expected) = LlamaCppCases.Value[index];
        var ids = Tokenizer.Encode(text);
        Assert.Equal(expected, ids);
        // The inputs are already NFC, so decoding gives the text back byte for byte.
        Assert.Equal(text, Tokenizer.Decode(ids));
    }

    [Fact]
    public void Special_token_ids_match_spec_2_5()
    {
        Assert.Equal(151643, Tokenizer.SpecialTokenId(QwenSpecialTokens.EndOfText));
        Assert.Equal(151644, Tokenizer.SpecialTokenId(QwenSpecialTokens.ImStart));
        Assert.Equal(151645, Tokenizer.SpecialTokenId(QwenSpecialTokens.ImEnd));
        Assert.Equal(151652, Tokenizer.SpecialTokenId(QwenSpecialTokens.VisionStart));
        Assert.Equal(151653, Tokenizer.SpecialTokenId(QwenSpecialTokens.VisionEnd));
        Assert.Equal(151655, Tokenizer.SpecialTokenId(QwenSpecialTokens.ImagePad));
        Assert.Equal(151656, Tokenizer.SpecialTokenId(QwenSpecialTokens.VideoPad));
        Assert.Equal(151665, Tokenizer.VocabularySize);
        var e = Assert.Throws<KeyNotFoundException>(() => Tokenizer.SpecialTokenId("<|no_such|>"));
        Assert.Contains("<|no_such|>", e.Message);
    }

    [Fact]
    public void Token_and_id_maps_are_inverse()
    {
        Assert.Equal(1879, Tokenizer.TokenToId("Ġworld"));
        Assert.Equal("Ġworld", Tokenizer.IdToToken(1879));
        Assert.Equal(151656, Tokenizer.TokenToId("<|video_pad|>"));
        Assert.Equal("<|video_pad|>", Tokenizer.IdToToken(151656));
        Assert.Null(Tokenizer.TokenToId("no-such-token-xyz"));
    }

    [Fact]
    public void Hello_world_sanity_ids() =>
        Assert.Equal([9707, 1879, 0, 2585, 525, 498, 30], Tokenizer.Encode("Hello world! How are you?"));

    [Fact]
    public void Vsibench_prompt_prefix_tokenizes_as_spec_2_6_says()
    {
        // The 15-token prefix of spec §2.6: <|im_start|>,system,⏎,You,␣are,␣a,␣helpful,␣assistant,.,<|im_end|>,⏎,<|im_start|>,user,⏎,<|vision_start|>
        var ids = Tokenizer.Encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>");
        Assert.Equal(15, ids.Count);
        Assert.Equal(151644, ids[0]);
        Assert.Equal(151645, ids[9]);
        Assert.Equal(151644, ids[11]);
        Assert.Equal(151652, ids[14]);
        Assert.Equal(["system", "Ċ", "You", "Ġare", "Ġa", "Ġhelpful", "Ġassistant", "."], ids.Skip(1).Take(8).Select(Tokenizer.IdToToken));
    }

    [Fact]
    public void Added_tokens_are_never_split_even_inside_words()
    {
        var ids = Tokenizer.Encode("abc<|video_pad|><|video_pad|>def<|im_end|>");
        Assert.Equal(2, ids.Count(id => id == 151656));
        Assert.Equal(151645, ids[^1]);
        Assert.Equal("abc<|video_pad|><|video_pad|>def<|im_end|>", Tokenizer.Decode(ids));
    }

    [Fact]
    public void Skip_special_tokens_drops_special_but_keeps_non_special_added_tokens()
    {
        var ids = Tokenizer.Encode("<|im_start|>assistant\n<tool_call>x</tool_call><|im_end|><|endoftext|>");
        Assert.Equal("assistant\n<tool_call>x</tool_call>", Tokenizer.Decode(ids, skipSpecialTokens: true));
        Assert.True(Tokenizer.IsSpecial(151645));
        Assert.False(Tokenizer.IsSpecial(151657)); // <tool_call>
    }

    [Fact]
    public void Decomposed_text_is_NFC_normalised_before_encoding()
    {
        string decomposed = "Cửa Việt".Normalize(System.Text.NormalizationForm.FormD);
        Assert.NotEqual("Cửa Việt", decomposed);
        Assert.Equal([34, 90063, 128324], Tokenizer.Encode(decomposed)); // llama.cpp's ids for the NFC form
        Assert.Equal("Cửa Việt", Tokenizer.Decode(Tokenizer.Encode(decomposed)));
    }

    // Pieces from Hugging Face tokenizers 0.23.2: pre_tokenizers.Split(Regex(Qwen2 pattern), "isolated").
    // .NET's Regex alone matches UTF-16 units and would split "🚀abc" and "😁我想在apple" in two.
    [Theory]
    [InlineData("🚀abc 𝐀𝐁c", new[] { "🚀abc", " 𝐀𝐁c" })]
    [InlineData("𝟏23", new[] { "𝟏", "2", "3" })]
    [InlineData("😁我想在apple", new[] { "😁我想在apple" })]
    [InlineData("x🦙y 🦙 🦙.cpp", new[] { "x", "🦙y", " 🦙", " 🦙.", "cpp" })]
    [InlineData("a\u00a0\u3000b \u2028c", new[] { "a", "\u00a0", "\u3000b", " ", "\u2028c" })]
    [InlineData("I'M HERE 'LL\t\n\n  x", new[] { "I", "'M", " HERE", " '", "LL", "\t\n\n", " ", " x" })]
    [InlineData("𠀀𠀁字 𝒳", new[] { "𠀀𠀁字", " 𝒳" })]
    [InlineData("😀😀!!", new[] { "😀😀!!" })]
    [InlineData("ab\u200d🌫\ufe0f", new[] { "ab", "\u200d🌫\ufe0f" })]
    [InlineData("12𝟘𝟙x", new[] { "1", "2", "𝟘", "𝟙", "x" })]
    public void Pre_tokenizer_splits_by_code_point_like_hugging_face(string text, string[] expectedPieces)
    {
        var pre = new Qwen2PreTokenizer([]);
        Assert.Equal(expectedPieces, pre.PreTokenize(text).Select(p => text.Substring(p.Offset, p.Length)));
    }

    [Fact]
    public void Pre_tokenizer_cuts_added_tokens_out_whole()
    {
        var pre = new Qwen2PreTokenizer(["<|im_start|>", "<|im"]);
        string text = "a<|im_start|>b<|im";
        Assert.Equal(["a", "<|im_start|>", "b", "<|im"], pre.PreTokenize(text).Select(p => text.Substring(p.Offset, p.Length)));
    }

    [Fact]
    public void Cut_utf8_character_decodes_to_replacement_char()
    {
        var ids = Tokenizer.Encode(" 🦙"); // 11162 99 247: the 4 bytes of 🦙 are cut across tokens
        Assert.Equal([11162, 99, 247], ids);
        // Like Rust's from_utf8_lossy: one U+FFFD per maximal invalid sequence.
        Assert.Equal(" \uFFFD", Tokenizer.Decode(ids.Take(1)));
        Assert.Equal(" \uFFFD", Tokenizer.Decode(ids.Take(2))); // F0 9F A6: still one cut character
    }

    [Fact]
    public void Ids_beyond_the_tokenizer_are_skipped_when_decoding() =>
        Assert.Equal("Hello", Tokenizer.Decode([9707, 151700]));

    [Fact]
    public void Missing_file_error_names_the_file()
    {
        string dir = TestPaths.NewTempDir("tok-missing");
        File.Copy(Path.Combine(ModelFolder, "vocab.json"), Path.Combine(dir, "vocab.json"));
        var e = Assert.Throws<FileNotFoundException>(() => Qwen2Tokenizer.FromFolder(dir));
        Assert.Contains("merges.txt", e.Message);
    }

    [Fact]
    public void Malformed_file_error_names_the_file()
    {
        string dir = TestPaths.NewTempDir("tok-bad");
        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 0, \"b\": ");
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\n");
        File.WriteAllText(Path.Combine(dir, "added_tokens.json"), "{}");
        var e = Assert.Throws<InvalidDataException>(() => Qwen2Tokenizer.FromFolder(dir));
        Assert.Contains("vocab.json", e.Message);

        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 0, \"b\": 1, \"ab\": 2}");
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\nab\n");
        e = Assert.Throws<InvalidDataException>(() => Qwen2Tokenizer.FromFolder(dir));
        Assert.Contains("merges.txt, line 3", e.Message);
    }

    [Fact]
    public void Tokenizer_config_special_flags_win_over_the_defaults()
    {
        string dir = TestPaths.NewTempDir("tok-config");
        File.Copy(Path.Combine(ModelFolder, "vocab.json"), Path.Combine(dir, "vocab.json"));
        File.Copy(Path.Combine(ModelFolder, "merges.txt"), Path.Combine(dir, "merges.txt"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """
            {"added_tokens_decoder": {
              "151643": {"content": "<|endoftext|>", "special": true},
              "151644": {"content": "<|im_start|>", "special": false}}}
            """);
        var tok = Qwen2Tokenizer.FromFolder(dir);
        Assert.Equal([151644, 8948], tok.Encode("<|im_start|>system"));
        Assert.Equal("<|im_start|>system", tok.Decode([151644, 8948, 151643], skipSpecialTokens: true));
    }
}
