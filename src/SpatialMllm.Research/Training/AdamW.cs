using SpatialMllm.Research.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>AdamW hyper-parameters (PyTorch's defaults except the seed's weight decay).</summary>
public sealed record AdamWOptions(double Beta1 = 0.9, double Beta2 = 0.999, double Eps = 1e-8, double WeightDecay = 0.1);

/// <summary>
/// PyTorch's <c>torch.optim.AdamW</c> (single-tensor form, decoupled weight decay, bias-corrected moments) over the
/// trainable parameters, with one learning rate per <see cref="ParameterGroup"/>. Written out rather than TorchSharp's
/// optimizer so the moments are plain tensors named by checkpoint key: a checkpoint stores them as safetensors
/// (<see cref="Save"/>) and a resumed run continues the same update exactly.
/// </summary>
public sealed class AdamW : IDisposable
{
    readonly IReadOnlyList<TrainableParameter> _parameters;
    readonly Dictionary<string, (Tensor ExpAvg, Tensor ExpAvgSq)> _state = new();

    public AdamW(IReadOnlyList<TrainableParameter> parameters, AdamWOptions? options = null)
    {
        _parameters = parameters;
        Options = options ?? new AdamWOptions();
    }

    public AdamWOptions Options { get; }

    /// <summary>Updates taken so far (PyTorch's per-parameter <c>step</c>; every parameter steps together here).</summary>
    public long Step { get; private set; }

    /// <summary>One update with the given learning rate per group; parameters without a gradient are skipped.</summary>
    /// <param name="decayAll">Decay every parameter, biases included (torch.optim.AdamW on one plain group, as the
    /// reference fixture does), instead of the seed's rule (<see cref="TrainableParameter.WeightDecay"/>).</param>
    public void Update(Func<ParameterGroup, double> learningRate, bool decayAll = false)
    {
        Step++;
        var o = Options;
        double biasCorrection1 = 1 - Math.Pow(o.Beta1, Step);
        double biasCorrection2Sqrt = Math.Sqrt(1 - Math.Pow(o.Beta2, Step));
        using var noGrad = torch.no_grad();
        foreach (var p in _parameters)
        {
            using var scope = torch.NewDisposeScope();
            var grad = p.Parameter.grad;
            if (grad is null) continue;
            double lr = learningRate(p.Group);
            var (expAvg, expAvgSq) = StateOf(p);
            if (decayAll || p.WeightDecay) p.Parameter.mul_(1 - lr * o.WeightDecay);
            expAvg.lerp_(grad, 1 - o.Beta1);
            // addcmul/addcdiv's Scalars held to the end: an implicit one may be finalized while libtorch reads it (VggtBlock).
            using var squareWeight = (1 - o.Beta2).ToScalar();
            using var stepSize = (-lr / biasCorrection1).ToScalar();
            expAvgSq.mul_(o.Beta2).addcmul_(grad, grad, squareWeight);
            var denom = (expAvgSq.sqrt() / biasCorrection2Sqrt).add_(o.Eps);
            p.Parameter.addcdiv_(expAvg, denom, stepSize);
        }
    }

    (Tensor, Tensor) StateOf(TrainableParameter p)
    {
        if (!_state.TryGetValue(p.Key, out var s))
        {
            s = (torch.zeros_like(p.Parameter).DetachFromDisposeScope(), torch.zeros_like(p.Parameter).DetachFromDisposeScope());
            _state[p.Key] = s;
        }
        return s;
    }

    /// <summary>The moments as <c>exp_avg.KEY</c> / <c>exp_avg_sq.KEY</c> and the step count in the metadata.</summary>
    public void Save(string path)
    {
        var tensors = _state.SelectMany(kv => new[]
        {
            KeyValuePair.Create("exp_avg." + kv.Key, kv.Value.ExpAvg),
            KeyValuePair.Create("exp_avg_sq." + kv.Key, kv.Value.ExpAvgSq),
        });
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["step"] = Step.ToString(System.Globalization.CultureInfo.InvariantCulture) });
    }

    /// <summary>Restores what <see cref="Save"/> wrote (same trainable keys); throws naming a missing key.</summary>
    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        Step = long.Parse(file.Metadata.TryGetValue("step", out var s) ? s : throw new CheckpointFormatException($"{path}: no 'step' in the metadata."),
            System.Globalization.CultureInfo.InvariantCulture);
        Dispose();
        if (Step == 0) return;
        foreach (var p in _parameters)
        {
            Tensor Read(string name) => file.Contains(name)
                ? file.Read(name, p.Parameter.dtype, p.Parameter.device).DetachFromDisposeScope()
                : throw new CheckpointFormatException($"{path} has no '{name}': it was saved for a different trainable set.");
            _state[p.Key] = (Read("exp_avg." + p.Key), Read("exp_avg_sq." + p.Key));
        }
    }

    public void Dispose()
    {
        foreach (var (a, b) in _state.Values) { a.Dispose(); b.Dispose(); }
        _state.Clear();
    }
}
