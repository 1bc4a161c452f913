using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Modules;

/// <summary>
/// What a result computed from some modules' weights was computed from: each parameter and buffer, with its tensor, its
/// storage address and libtorch's version counter (<see cref="TensorVersion"/>). Any PyTorch idiom that changes a weight
/// changes one of these — an in-place op or an optimizer step bumps the version, <c>load_state_dict</c> copies in place
/// (version), a new <c>Parameter</c> or <c>module.to(..)</c> brings another tensor and address — so a cache keyed on a
/// snapshot (<see cref="FirstChange"/>) is rebuilt, or refused, instead of going stale. Taking one is host work only (no
/// device sync, no names built): two native calls a tensor, well under a millisecond for Qwen2.5-VL-3B's decoder.
/// </summary>
public sealed class WeightsSnapshot
{
    readonly IReadOnlyList<(string Prefix, nn.Module Module)> _modules;
    readonly (IntPtr Handle, IntPtr Data, long Version)[] _entries;

    WeightsSnapshot(IReadOnlyList<(string, nn.Module)> modules, (IntPtr, IntPtr, long)[] entries) => (_modules, _entries) = (modules, entries);

    /// <summary>The parameters and buffers of <paramref name="modules"/> (each named under its prefix in messages).</summary>
    public static WeightsSnapshot Of(IReadOnlyList<(string Prefix, nn.Module Module)> modules)
    {
        var entries = new List<(IntPtr, IntPtr, long)>(512);
        foreach (var (_, module) in modules) Walk(module, null, (_, tensor) => entries.Add(Entry(tensor)));
        return new WeightsSnapshot(modules, [.. entries]);
    }

    /// <summary>
    /// Every parameter and buffer in a fixed order — a module's own, then its children's, depth first — built into names
    /// under <paramref name="prefix"/> only when one is given (TorchSharp's recursive <c>named_parameters</c> builds every
    /// name at every level, which costs more than the snapshot itself).
    /// </summary>
    static void Walk(nn.Module module, string? prefix, Action<string?, Tensor> visit)
    {
        foreach (var (name, parameter) in module.named_parameters(recurse: false)) visit(prefix is null ? null : prefix + name, parameter);
        foreach (var (name, buffer) in module.named_buffers(recurse: false)) visit(prefix is null ? null : prefix + name, buffer);
        foreach (var (name, child) in module.named_children()) Walk(child, prefix is null ? null : $"{prefix}{name}.", visit);
    }

    static (IntPtr, IntPtr, long) Entry(Tensor tensor) =>
        (tensor.Handle, tensor.device_type == DeviceType.META ? IntPtr.Zero : TensorAddress.OrZero(tensor), TensorVersion.Of(tensor));

    /// <summary>
    /// The name of the first weight of <paramref name="now"/> that differs from this snapshot (changed in place, replaced,
    /// added or removed), or null when every one is as it was. Without libtorch's version counters every snapshot differs.
    /// </summary>
    public string? FirstChange(WeightsSnapshot now)
    {
        if (!TensorVersion.Available) return "(libtorch's version counters are unavailable: every weight counts as changed)";
        int length = Math.Min(_entries.Length, now._entries.Length);
        for (int i = 0; i < length; i++)
            if (_entries[i] != now._entries[i]) return now.NameAt(i);
        return _entries.Length == now._entries.Length ? null : now.NameAt(length);
    }

    /// <summary>The checkpoint-style name of entry <paramref name="index"/> (only ever built for a message).</summary>
    string NameAt(int index)
    {
        var names = new List<string?>();
        foreach (var (prefix, module) in _modules) Walk(module, prefix, (name, _) => names.Add(name));
        return index < names.Count ? names[index]! : "(a weight that is no longer there)";
    }
}
