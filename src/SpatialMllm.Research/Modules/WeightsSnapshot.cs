using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Modules;

/// <summary>
/// What a result computed from some modules' weights was computed from: each parameter and buffer by name, with its
/// tensor, its storage address and libtorch's version counter (<see cref="TensorVersion"/>). Any PyTorch idiom that
/// changes a weight changes one of these — an in-place op or an optimizer step bumps the version, <c>load_state_dict</c>
/// copies in place (version), a new <c>Parameter</c> or <c>module.to(..)</c> brings another tensor and address — so a cache
/// keyed on a snapshot (<see cref="FirstChange"/>) is rebuilt, or refused, instead of going stale. Reading one is host
/// work only (no device sync): a few hundred nanoseconds a tensor.
/// </summary>
public sealed class WeightsSnapshot
{
    readonly (string Name, IntPtr Handle, IntPtr Data, long Version)[] _entries;

    WeightsSnapshot((string, IntPtr, IntPtr, long)[] entries) => _entries = entries;

    /// <summary>The parameters and buffers of <paramref name="modules"/>, named with each module's prefix.</summary>
    public static WeightsSnapshot Of(IEnumerable<(string Prefix, nn.Module Module)> modules)
    {
        var entries = new List<(string, IntPtr, IntPtr, long)>();
        foreach (var (prefix, module) in modules)
        {
            foreach (var (name, parameter) in module.named_parameters()) entries.Add(Entry(prefix + name, parameter));
            foreach (var (name, buffer) in module.named_buffers()) entries.Add(Entry(prefix + name, buffer));
        }
        return new WeightsSnapshot([.. entries]);
    }

    static (string, IntPtr, IntPtr, long) Entry(string name, Tensor tensor) =>
        (name, tensor.Handle, tensor.device_type == DeviceType.META || tensor.NumberOfElements == 0 ? IntPtr.Zero : TensorDataPointer.Of(tensor),
            TensorVersion.Of(tensor));

    /// <summary>
    /// The first weight of <paramref name="now"/> that differs from this snapshot (changed in place, replaced, added or
    /// removed), or null when every one is as it was. Without libtorch's version counters every snapshot differs.
    /// </summary>
    public string? FirstChange(WeightsSnapshot now)
    {
        if (!TensorVersion.Available) return "(libtorch's version counters are unavailable: every weight counts as changed)";
        for (int i = 0; i < Math.Max(_entries.Length, now._entries.Length); i++)
        {
            if (i >= _entries.Length) return now._entries[i].Name;
            if (i >= now._entries.Length || _entries[i] != now._entries[i]) return _entries[i].Name;
        }
        return null;
    }
}
