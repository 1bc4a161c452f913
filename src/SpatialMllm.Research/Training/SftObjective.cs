using SpatialMllm.Research.Models;
using SpatialMllm.Research.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// The seed's SFT forward through our modules with autograd: vision tower (the frozen blocks without a graph, the
/// merger with one), VGGT (with a graph when it trains: <c>tune_mm_spatial_encoder</c>), the connector, the decoder; loss = transformers' shifted cross-entropy,
/// the mean over positions whose next label is not -100. Only those positions go through the LM head (the other
/// logits have no gradient), which is the same loss without a [L, vocab] logits tensor.
/// </summary>
public static class SftObjective
{
    /// <summary>The mean loss of one example as a scalar float32 tensor with a graph (call <c>backward()</c>).</summary>
    public static Tensor Loss(SpatialMllmModel model, SftExample example)
    {
        using var scope = torch.NewDisposeScope();
        var device = model.Device;
        var ids = torch.tensor(example.InputIds, device: device).unsqueeze(0);
        var grid = example.Grid.ToTensor().to(device);
        var visual = model.EncodeForTraining(example.PixelValuesVideos, example.Grid, example.VideoTchw, example.SpatialTokens, example.SpatialTokensWeights);
        var embeds = model.Language.EmbedWithVisualTokens(ids, visual, model.Config.Tokens.VideoTokenId);
        var (positions, _) = RopeIndex.Compute(ids, model.Config.Tokens, model.Config.Vision, grid,
            torch.tensor(new[] { example.SecondPerGridT }, device: device));
        var hidden = model.model.forward(embeds, positions)[0]; // [L, hidden]

        // logits[t] predicts input_ids[t + 1]: keep t where labels[t + 1] != -100.
        var shifted = example.Labels.Skip(1).ToArray();
        var positionsInLoss = Enumerable.Range(0, shifted.Length).Where(t => shifted[t] != SftExample.IgnoreIndex).Select(t => (long)t).ToArray();
        if (positionsInLoss.Length == 0)
            throw new ArgumentException($"{example.Source}: no label is set (every label is -100), so the example has no loss.");
        var rows = hidden.index_select(0, torch.tensor(positionsInLoss, device: device));
        var logits = nn.functional.linear(rows, model.lm_head.weight).to(ScalarType.Float32);
        var targets = torch.tensor(positionsInLoss.Select(t => shifted[t]).ToArray(), device: device);
        return nn.functional.cross_entropy(logits, targets).MoveToOuterDisposeScope();
    }
}
