using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.GpuTests;

/// <summary>
/// Seeded sampling on CUDA (GRPO's rollouts, <c>--do_sample --seed</c>): the tiny model in float32 samples the tokens on
/// CUDA that it samples on the CPU under the same seeds — K rows from their own seeds after one shared prefix, and one
/// answer from one seed. The seeds drive CPU generators (TorchSharp makes no CUDA generator) that draw one uniform per row
/// and step; before that a seeded draw on CUDA stopped in libtorch ("Expected a 'cuda' device type for generator but
/// found 'cpu'").
/// </summary>
public sealed class SamplingGpuTests(ITestOutputHelper output)
{
    [Fact]
    public void Seeded_sampling_on_cuda_draws_the_tokens_it_draws_on_the_cpu()
    {
        var cuda = Gpu.RequireCuda();
        string tiny = Gpu.TinyFixture();
        using var onCpu = SpatialMllmModel.Load(tiny, torch.CPU, ScalarType.Float32);
        using var onCuda = SpatialMllmModel.Load(tiny, cuda, ScalarType.Float32);
        var grid = new GridThw(2, 4, 4);
        using var visual = torch.randn([grid.MergedTokenCount(2), onCpu.Config.Text.HiddenSize], generator: new torch.Generator(3));
        using var cpuFeatures = VideoFeatures.FromTensors(visual, grid, 0.5);
        using var cudaFeatures = VideoFeatures.FromTensors(visual.to(cuda), grid, 0.5);
        // The tiny fixture has no tokenizer (so no answer texts): a prompt of ids around the video, sequences compared as ids;
        // no eos (−1), so every row runs 12 tokens.
        var tokens = onCpu.Config.Tokens;
        int[] prompt = [11, 12, 13, tokens.VisionStartTokenId, .. Enumerable.Repeat(tokens.VideoTokenId, cpuFeatures.TokenCount),
            tokens.VisionEndTokenId, 21, 22, 23, 24];
        int shared = onCpu.SharedPrefixLength(prompt);
        // The random tiny model's logits are so peaked that at temperature 1 (and 3) every seed draws token 24 twelve
        // times (measured on the CPU); at 10 the rows spread over the vocabulary, so the draws themselves are compared.
        var sampling = new GenerationOptions([-1], MaxNewTokens: 12, DoSample: true, Temperature: 10.0, TopK: 0, Seed: 5);
        long[][] Sample(SpatialMllmModel model, VideoFeatures features, GenerationOptions options, int rows)
        {
            using var result = model.GenerateBatch(Enumerable.Repeat(prompt, rows).ToList(), shared, features, options);
            using var sequences = result.Sequences.cpu();
            return [.. Enumerable.Range(0, rows).Select(b => sequences[b].data<long>().ToArray())];
        }

        var perRow = sampling with { RowSeeds = [5, 6, 7, 8] };
        var cpuRows = Sample(onCpu, cpuFeatures, perRow, 4);
        var cudaRows = Sample(onCuda, cudaFeatures, perRow, 4);
        foreach (var (c, g) in cpuRows.Zip(cudaRows)) output.WriteLine($"cpu {string.Join(" ", c)} | cuda {string.Join(" ", g)}");
        Assert.Equal(cpuRows, cudaRows);
        Assert.True(cpuRows.Select(r => string.Join(",", r)).Distinct().Count() > 1, "the rows sample different completions");
        Assert.Equal(Sample(onCpu, cpuFeatures, sampling, 1), Sample(onCuda, cudaFeatures, sampling, 1));
    }
}
