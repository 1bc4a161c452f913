using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests;

/// <summary>TorchSharp's native library loads here (Debian 12 needs the build's GLIBCXX patch) and computes.</summary>
public class TorchRuntimeTests
{
    [Fact]
    public void Torch_initialises_and_runs_float32_and_bf16()
    {
        TorchRuntime.EnsureLoaded();
        using var a = torch.ones(4, 4, dtype: ScalarType.BFloat16);
        using var q = torch.randn(1, 2, 8, 16);
        using var attention = nn.functional.scaled_dot_product_attention(q, q, q, is_casual: true);
        Assert.Equal(4.0f, a.matmul(a)[0, 0].to(ScalarType.Float32).item<float>());
        Assert.Equal(q.shape, attention.shape);
    }

    /// <summary>float32 must mean float32 on CUDA: with cuDNN's default TF32 the VGGT patch embedding (a convolution)
    /// moved every spatial token ~1e-3 away from the reference. The flags are libtorch's global context.</summary>
    [Fact]
    public void Loading_a_float32_model_turns_TF32_off_for_cuBLAS_and_cuDNN()
    {
        using var model = SpatialMllm.Research.Models.SpatialMllmModel.Load(TestPaths.TinyFixture, torch.CPU, ScalarType.Float32);
        Assert.False(torch.backends.cudnn.allow_tf32);
        Assert.False(torch.backends.cuda.matmul.allow_tf32);
    }

    [Fact]
    public void Device_and_dtype_names_parse()
    {
        Assert.Equal(DeviceType.CPU, TorchRuntime.ParseDevice("cpu").type);
        Assert.Equal(ScalarType.BFloat16, TorchRuntime.ParseDType("bf16"));
        Assert.Throws<ArgumentException>(() => TorchRuntime.ParseDType("int3"));
    }

    [Fact]
    public void The_native_layer_comes_from_the_build_output_not_the_nuget_cache()
    {
        var loaded = TorchRuntime.LoadedNativeLibraries();

        string shim = Assert.Single(loaded, path => Path.GetFileName(path) == "libLibTorchSharp.so");
        Assert.Equal(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory), Path.GetDirectoryName(shim));
    }
}
