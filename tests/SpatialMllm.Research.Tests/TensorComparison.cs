using SpatialMllm.Research.Verification;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests;

/// <summary>
/// The one way tests compare tensors with expected ones: <see cref="FixtureVerifier.Errors"/>' error (absolute for values
/// up to 1, relative above), arguments as in xunit's asserts: expected, then actual.
/// </summary>
internal static class TensorComparison
{
    /// <summary>max |actual − expected| / max(1, |expected|), computed in float64.</summary>
    public static double MaxError(Tensor expected, Tensor actual) => FixtureVerifier.Errors(expected, actual).Rel;

    /// <summary>Asserts the shapes match and the error is within <paramref name="tolerance"/>; logs the error.</summary>
    public static double AssertClose(string name, Tensor expected, Tensor actual, double tolerance, ITestOutputHelper? output = null)
    {
        Assert.Equal(expected.shape, actual.shape);
        double error = MaxError(expected, actual);
        output?.WriteLine($"{name}: max error {error:E2} (tolerance {tolerance:E0})");
        Assert.True(error <= tolerance, $"{name}: max error {error:E3} exceeds {tolerance:E0}.");
        return error;
    }

    /// <summary>A tensor of ids or positions as longs, for Assert.Equal.</summary>
    public static long[] Longs(Tensor t)
    {
        using var host = t.to(ScalarType.Int64).cpu().contiguous();
        return host.data<long>().ToArray();
    }
}
