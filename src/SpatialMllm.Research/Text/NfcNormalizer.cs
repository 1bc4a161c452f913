using System.Text;
using Microsoft.ML.Tokenizers;

namespace SpatialMllm.Research.Text;

/// <summary>Unicode NFC, the normalizer of Qwen2's tokenizer.json (Microsoft.ML.Tokenizers has none built in).</summary>
internal sealed class NfcNormalizer : Normalizer
{
    public static NfcNormalizer Instance { get; } = new();

    public override string Normalize(string original) =>
        string.IsNullOrEmpty(original) || original.IsNormalized(NormalizationForm.FormC)
            ? original ?? string.Empty
            : original.Normalize(NormalizationForm.FormC);

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
}
