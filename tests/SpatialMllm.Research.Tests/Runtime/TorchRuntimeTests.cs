using SpatialMllm.Research.Runtime;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Runtime;

public class TorchRuntimeTests
{
    /// <summary>float32 must mean float32 on CUDA: with cuDNN's default TF32 the VGGT patch embedding (a convolution)
    /// moved every spatial token ~1e-3 away from the reference. The flags are libtorch's global context, set on load.</summary>
    [Fact]
    public void Loading_turns_TF32_off_for_cuBLAS_and_cuDNN()
    {
        TorchRuntime.EnsureLoaded();
        Assert.False(torch.backends.cudnn.allow_tf32);
        Assert.False(torch.backends.cuda.matmul.allow_tf32);
    }
}
