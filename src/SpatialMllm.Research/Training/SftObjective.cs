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

    /// <summary>
    /// The mean of the examples' losses (each the mean over its own labelled positions, as <see cref="Loss(SpatialMllmModel, SftExample)"/>)
    /// in one forward: what accumulating over the examples one at a time gives, in a few kernels instead of one set per
    /// example (transformers' token mean over a padded batch would weigh long answers more). Videos of one size are encoded
    /// together (<see cref="SpatialMllmModel.EncodeForTraining"/> with [B, T, 3, H, W] frames); the token sequences are padded
    /// on the right, which under the causal mask leaves every real position's hidden state its own. One example: exactly
    /// <see cref="Loss(SpatialMllmModel, SftExample)"/>.
    /// </summary>
    public static Tensor Loss(SpatialMllmModel model, IReadOnlyList<SftExample> batch)
    {
        if (batch.Count == 0) throw new ArgumentException("A batch needs at least one example.", nameof(batch));
        if (batch.Count == 1) return Loss(model, batch[0]);
        using var scope = torch.NewDisposeScope();
        var device = model.Device;
        int count = batch.Count, length = batch.Max(e => e.InputIds.Length);
        var ids = new long[count * length];
        var mask = new long[count * length];
        var rows = new List<long>();
        var targets = new List<long>();
        var weights = new List<float>();
        for (int b = 0; b < count; b++)
        {
            var e = batch[b];
            // The padding repeats the example's last token (never a video token); the mask keeps it out of M-RoPE's positions.
            Array.Fill(ids, e.InputIds[^1], b * length, length);
            Array.Copy(e.InputIds, 0, ids, b * length, e.InputIds.Length);
            Array.Fill(mask, 1L, b * length, e.InputIds.Length);
            var shifted = e.Labels.Skip(1).ToArray();
            var inLoss = Enumerable.Range(0, shifted.Length).Where(t => shifted[t] != SftExample.IgnoreIndex).ToArray();
            if (inLoss.Length == 0)
                throw new ArgumentException($"{e.Source}: no label is set (every label is -100), so the example has no loss.");
            rows.AddRange(inLoss.Select(t => (long)b * length + t));
            targets.AddRange(inLoss.Select(t => shifted[t]));
            weights.AddRange(Enumerable.Repeat(1f / (count * inLoss.Length), inLoss.Length));
        }
        var idsTensor = torch.tensor(ids, [count, length], device: device);
        var visual = EncodeBatch(model, batch);
        var embeds = model.Language.EmbedWithVisualTokens(idsTensor, visual, model.Config.Tokens.VideoTokenId);
        var grids = torch.tensor(batch.SelectMany(e => new long[] { e.Grid.T, e.Grid.H, e.Grid.W }).ToArray(), [count, 3], device: device);
        var (positions, _) = RopeIndex.Compute(idsTensor, model.Config.Tokens, model.Config.Vision, grids,
            torch.tensor(batch.Select(e => e.SecondPerGridT).ToArray(), device: device), attentionMask: torch.tensor(mask, [count, length], device: device));
        var hidden = model.model.forward(embeds, positions).reshape(count * length, -1); // [B·L, hidden]
        var selected = hidden.index_select(0, torch.tensor(rows.ToArray(), device: device));
        var logits = nn.functional.linear(selected, model.lm_head.weight).to(ScalarType.Float32);
        var perPosition = nn.functional.cross_entropy(logits, torch.tensor(targets.ToArray(), device: device), reduction: nn.Reduction.None);
        return (perPosition * torch.tensor(weights.ToArray(), device: device)).sum().MoveToOuterDisposeScope();
    }

    /// <summary>The batch's fused visual tokens in example order: one encoder pass when every video has the same size
    /// and length, else one per example.</summary>
    static Tensor EncodeBatch(SpatialMllmModel model, IReadOnlyList<SftExample> batch)
    {
        var first = batch[0];
        if (batch.All(e => e.Grid == first.Grid && e.VideoTchw.shape.SequenceEqual(first.VideoTchw.shape)))
            return model.EncodeForTraining(torch.cat(batch.Select(e => e.PixelValuesVideos).ToArray()),
                first.Grid with { T = first.Grid.T * batch.Count }, torch.stack(batch.Select(e => e.VideoTchw).ToArray()));
        return torch.cat(batch.Select(e => model.EncodeForTraining(e.PixelValuesVideos, e.Grid, e.VideoTchw, e.SpatialTokens, e.SpatialTokensWeights)).ToArray());
    }
}
