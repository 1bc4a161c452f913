using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Modules;

/// <summary>Module weights against the caller's <c>torch.NewDisposeScope</c>.</summary>
internal static class DisposeScopes
{
    /// <summary>
    /// Takes <paramref name="module"/>'s parameters and buffers out of the dispose scope they were made in, so that a model
    /// loaded inside a scope (space-aware sampling loads VGGT lazily, within its first selection's scope; a notebook cell
    /// may load in one) lives until the module is disposed, not until the scope ends.
    /// </summary>
    public static T KeepOutOfDisposeScopes<T>(this T module) where T : nn.Module
    {
        foreach (var parameter in module.parameters()) parameter.DetachFromDisposeScope();
        foreach (var buffer in module.buffers()) buffer.DetachFromDisposeScope();
        return module;
    }
}
