using TorchSharp;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// Scalars that live as long as the process, for the alpha of <c>add_</c>/<c>sub_</c> and the like. TorchSharp turns a
/// literal (<c>x.add_(y)</c> is <c>x.add_(y, 1)</c>) into a temporary <c>Scalar</c> with a finalizer and passes only its
/// handle to libtorch, so a garbage collection started by another thread during the native call may free it while
/// libtorch still reads it ("Expected false to be true" from <c>Scalar::toFloat</c>, seen in notebook 05's VGGT loop).
/// A held Scalar is never finalized.
/// </summary>
internal static class HeldScalars
{
    public static readonly Scalar One = 1.ToScalar();
}
