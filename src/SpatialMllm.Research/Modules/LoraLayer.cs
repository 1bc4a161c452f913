using System.Runtime.CompilerServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Modules;

/// <summary>
/// A LoRA adapter on one <c>nn.Linear</c>, as PEFT's <c>lora.Linear</c> computes it:
/// <c>base_layer(x) + lora_B(lora_A(lora_dropout(x))) · scaling</c>, scaling = lora_alpha / r (or / √r with rsLoRA),
/// lora_A initialised kaiming-uniform (a = √5) and lora_B zeros, so a fresh adapter changes nothing.
/// <para>
/// PEFT replaces the module; TorchSharp's <c>Linear</c> is sealed and our modules hold typed fields, so here the module
/// stays and the adapter hangs on it: <c>lora_A</c>, <c>lora_B</c> and <c>lora_dropout</c> are registered as its children
/// (parameters <c>…q_proj.lora_A.weight</c>, the names PEFT saves), and a forward hook adds the update wherever the layer
/// is called as PyTorch calls a module (<c>call</c>, <c>Sequential</c>). The fast paths that read a Linear's weight
/// directly add <see cref="Update"/> themselves (the fused q/k/v GEMM, <see cref="FlatLinear"/>), and the decoder's
/// TorchScript/CUDA-graph decode step, which packs the base weights only, is not used while a decoder adapter is
/// active (decoding then runs the eager path, as it does under a hook).
/// </para>
/// <para>
/// The weight contract holds because everything an adapter computes with is in the module tree: a cache keyed on a
/// <see cref="WeightsSnapshot"/> sees adding, editing or removing an adapter like any weight change, merging and
/// unmerging are in-place edits of the base weight, and a disabled adapter is taken out of the tree (its modules
/// unregistered, so the model is the base model, parameters and snapshot alike) until it is enabled again.
/// </para>
/// </summary>
public sealed class LoraLayer
{
    static readonly ConditionalWeakTable<Linear, LoraLayer> Attached = new();

    readonly Action _removeHook;
    bool _enabled = true;

    LoraLayer(string name, Linear baseLayer, int r, double loraAlpha, double dropout, bool useRslora, ScalarType dtype)
    {
        Name = name;
        base_layer = baseLayer;
        this.r = r;
        lora_alpha = loraAlpha;
        scaling = useRslora ? loraAlpha / Math.Sqrt(r) : loraAlpha / r;
        var weight = baseLayer.weight!;
        var device = weight.device;
        lora_A = nn.Linear(baseLayer.in_features, r, hasBias: false, device, dtype);
        lora_B = nn.Linear(r, baseLayer.out_features, hasBias: false, device, dtype);
        using (torch.no_grad())
        {
            nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
            nn.init.zeros_(lora_B.weight!);
        }
        lora_dropout = dropout > 0 ? nn.Dropout(dropout) : nn.Identity();
        lora_dropout.train(baseLayer.training);
        lora_A.KeepOutOfDisposeScopes();
        lora_B.KeepOutOfDisposeScopes();
        Register();
        var hook = baseLayer.register_forward_hook((_, input, output) => Active ? AddUpdate(output, input) : output);
        _removeHook = hook.remove;
    }

    /// <summary>The adapted module's name in the model (<c>model.layers.0.self_attn.q_proj</c>), for messages.</summary>
    public string Name { get; }

    /// <summary>The adapted layer (its weight is what merging edits).</summary>
    public Linear base_layer { get; }

    /// <summary>[r, in_features]: the down-projection.</summary>
    public Linear lora_A { get; }

    /// <summary>[out_features, r]: the up-projection (zeros when fresh).</summary>
    public Linear lora_B { get; }

    /// <summary>Dropout on the adapter's input (identity for lora_dropout 0); active in training mode only.</summary>
    public nn.Module<Tensor, Tensor> lora_dropout { get; }

    public int r { get; }
    public double lora_alpha { get; }
    public double scaling { get; }

    /// <summary>Whether the update is in <c>base_layer.weight</c> (then the forward adds nothing).</summary>
    public bool merged { get; private set; }

    /// <summary>Whether the adapter takes part (PEFT's <c>enable_adapters</c>).</summary>
    public bool Enabled => _enabled;

    /// <summary>Whether forwards add the update: enabled and not merged.</summary>
    public bool Active => _enabled && !merged;

    /// <summary>Whether the update draws random dropout masks (training mode, lora_dropout &gt; 0).</summary>
    public bool DrawsDropout => Active && lora_dropout is Dropout { training: true, p: > 0 };

    /// <summary>The adapter on <paramref name="layer"/>, or null.</summary>
    public static LoraLayer? Of(Linear layer) => Attached.TryGetValue(layer, out var lora) ? lora : null;

    /// <summary>Whether <paramref name="layer"/> has an adapter whose update forwards must add.</summary>
    public static bool IsActive(Linear layer) => Attached.TryGetValue(layer, out var lora) && lora.Active;

    /// <summary>
    /// Adds an adapter to <paramref name="layer"/> (named <paramref name="name"/> in messages). <paramref name="dtype"/>:
    /// the adapter's weights' dtype (PEFT's <c>autocast_adapter_dtype</c> keeps them in float32 over bf16 weights).
    /// </summary>
    public static LoraLayer Attach(string name, Linear layer, int r, double loraAlpha, double loraDropout, bool useRslora, ScalarType dtype)
    {
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(r), $"r should be a positive integer value but the value passed is {r}.");
        if (loraDropout is < 0 or >= 1 || double.IsNaN(loraDropout))
            throw new ArgumentOutOfRangeException(nameof(loraDropout), $"lora_dropout must be in [0, 1); got {loraDropout}.");
        if (Of(layer) is not null) throw new InvalidOperationException($"{name} already has a LoRA adapter.");
        var lora = new LoraLayer(name, layer, r, loraAlpha, loraDropout, useRslora, dtype);
        Attached.Add(layer, lora);
        return lora;
    }

    /// <summary>
    /// <c>lora_B(lora_A(lora_dropout(x))) · scaling</c> in the adapter's dtype (x is cast to it first, as PEFT does); the
    /// caller adds it to the base output, which keeps its dtype.
    /// </summary>
    public Tensor Update(Tensor x)
    {
        var weight = lora_A.weight!;
        if (x.device_type != weight.device_type || x.device_index != weight.device_index)
            throw new InvalidOperationException(
                $"The LoRA adapter on {Name} is on {weight.device}, its input on {x.device}: TorchSharp's Linear.to(..) does not move " +
                "a Linear's children, so move the model before adding adapters.");
        using var scope = torch.NewDisposeScope();
        var input = x.dtype == weight.dtype ? x : x.to(weight.dtype);
        return lora_B.forward(lora_A.forward(lora_dropout.forward(input))).mul_(scaling).MoveToOuterDisposeScope();
    }

    /// <summary>Adds <see cref="Update"/>(<paramref name="x"/>) into <paramref name="output"/> (the base layer's output, or
    /// its rows of a fused output) in place, rounding once to its dtype as PEFT's <c>(result + update).to(dtype)</c>.</summary>
    public Tensor AddUpdate(Tensor output, Tensor x)
    {
        using var update = Update(x);
        return output.add_(update, HeldScalars.One);
    }

    /// <summary>PEFT's <c>get_delta_weight</c>: <c>lora_B.weight @ lora_A.weight · scaling</c> [out, in], computed in
    /// float32 for half-precision adapters on the CPU and returned in the adapter's dtype.</summary>
    public Tensor get_delta_weight()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        Tensor a = lora_A.weight!, b = lora_B.weight!;
        bool upcast = a.device_type == DeviceType.CPU && a.dtype is ScalarType.BFloat16 or ScalarType.Float16;
        var delta = (upcast ? b.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32)) : b.matmul(a)).mul_(scaling);
        return (upcast ? delta.to(a.dtype) : delta).MoveToOuterDisposeScope();
    }

    /// <summary>Adds the update into <c>base_layer.weight</c> in place (PEFT's <c>merge</c>); nothing when merged already.</summary>
    public void merge()
    {
        if (merged) return;
        if (!_enabled) throw new InvalidOperationException($"The LoRA adapter on {Name} is disabled: enable it before merging.");
        using var noGrad = torch.no_grad();
        using var delta = get_delta_weight();
        base_layer.weight!.add_(delta, HeldScalars.One);
        merged = true;
    }

    /// <summary>Subtracts the merged update from <c>base_layer.weight</c> (PEFT's <c>unmerge</c>); nothing when not merged.</summary>
    public void unmerge()
    {
        if (!merged) return;
        using var noGrad = torch.no_grad();
        using var delta = get_delta_weight();
        base_layer.weight!.sub_(delta);
        merged = false;
    }

    /// <summary>
    /// Turns the adapter on or off (PEFT's <c>enable_adapters</c>; a merged adapter is unmerged first, as PEFT's forward
    /// does). Off, its modules leave the module tree, so the model is the base model until it is turned on again.
    /// </summary>
    public void SetEnabled(bool enabled)
    {
        if (enabled == _enabled) return;
        if (!enabled)
        {
            unmerge();
            Unregister();
        }
        else Register();
        _enabled = enabled;
    }

    /// <summary>Takes the adapter off its layer for good (PEFT's <c>unload</c>; merge first to keep its update) and
    /// disposes its weights.</summary>
    public void Remove()
    {
        _removeHook();
        if (_enabled) Unregister();
        Attached.Remove(base_layer);
        lora_A.Dispose();
        lora_B.Dispose();
        lora_dropout.Dispose();
    }

    void Register()
    {
        base_layer.register_module(nameof(lora_A), lora_A);
        base_layer.register_module(nameof(lora_B), lora_B);
        base_layer.register_module(nameof(lora_dropout), lora_dropout);
    }

    void Unregister()
    {
        // TorchSharp's register_module(name, null) removes the child.
        base_layer.register_module(nameof(lora_A), null!);
        base_layer.register_module(nameof(lora_B), null!);
        base_layer.register_module(nameof(lora_dropout), null!);
    }
}
