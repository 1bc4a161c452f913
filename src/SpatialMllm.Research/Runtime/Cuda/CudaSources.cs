using System.Reflection;

namespace SpatialMllm.Research.Runtime.Cuda;

/// <summary>The CUDA C sources of the fused kernels, embedded in the assembly from the <c>.cu</c> / <c>.cuh</c> files
/// beside the code that launches them (compiled at run time by <see cref="CompiledCudaModule"/>).</summary>
internal static class CudaSources
{
    /// <summary>The text of the embedded source <paramref name="fileName"/> (e.g. <c>vision_rope.cu</c>).</summary>
    public static string Read(string fileName)
    {
        string name = "SpatialMllm.Research.Cuda." + fileName;
        using var stream = typeof(CudaSources).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"The CUDA source {fileName} is not embedded in {typeof(CudaSources).Assembly.GetName().Name} (resource {name}).");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
