using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Models.Vggt;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Runtime;

/// <summary>
/// The run-time-compiled CUDA kernels on a CPU machine: they never apply to CPU tensors (the eager path keeps its
/// results), and their launch geometry and library lookup are plain arithmetic. Their GPU results are checked against
/// the eager path by the benchmark app's <c>kernels</c> part.
/// </summary>
public class FusedKernelTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Vggt_qk_norm_rope_leaves_cpu_tensors_to_the_eager_path(ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var qkv = torch.randn([2, 7, 3, 4, FusedQkNormRope.HeadDim], dtype: dtype);
        using var qNorm = nn.LayerNorm(FusedQkNormRope.HeadDim, dtype: dtype);
        using var kNorm = nn.LayerNorm(FusedQkNormRope.HeadDim, dtype: dtype);
        using var rope = Rope2D.Create(2, 3, 1, 1, FusedQkNormRope.HeadDim, dtype, torch.CPU);

        Assert.Null(FusedQkNormRope.TryApply(qkv.select(2, 0), qkv.select(2, 1), qNorm, kNorm, 1e-5, rope));
    }

    [Fact]
    public void Vggt_attention_on_cpu_is_the_eager_norm_then_rope()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        using var attention = new VggtAttention(128, 2, qkNorm: true);
        using var rope = Rope2D.Create(2, 3, 1, 1, FusedQkNormRope.HeadDim, ScalarType.Float32, torch.CPU);
        var x = torch.randn(1, 7, 128);

        var qkv = ((TorchSharp.Modules.Linear)attention.named_modules().Single(m => m.name == "qkv").module).forward(x).view(1, 7, 3, 2, 64);
        var norms = attention.named_modules().Where(m => m.name is "q_norm" or "k_norm")
            .ToDictionary(m => m.name, m => (TorchSharp.Modules.LayerNorm)m.module);
        var q = rope.Apply(norms["q_norm"].forward(qkv.select(2, 0)));
        var k = rope.Apply(norms["k_norm"].forward(qkv.select(2, 1)));
        var attended = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), qkv.select(2, 2).transpose(1, 2));
        var proj = (TorchSharp.Modules.Linear)attention.named_modules().Single(m => m.name == "proj").module;
        var expected = proj.forward(attended.transpose(1, 2).reshape(1, 7, 128));

        Assert.True(attention.forward(x, rope).eq(expected).all().item<bool>());
    }

    [Fact]
    public void Vision_rope_leaves_cpu_tensors_to_the_eager_path()
    {
        using var scope = torch.NewDisposeScope();
        var qk = torch.randn(5, 3, 2, 80, dtype: ScalarType.BFloat16).permute(1, 0, 2, 3).narrow(0, 0, 2);
        var angles = torch.rand(5, 1, 80);

        Assert.Null(FusedVisionRope.TryApply(qk, angles.cos(), RotaryEmbedding.SignedSin(angles.sin())));
    }

    [Fact]
    public void Launch_geometry_covers_every_row()
    {
        // 16 frames at 476×644: 25104 tokens, 16 heads; q and k rows at 16 a block (8 half-warps, 2 rows each).
        Assert.Equal(50208u, FusedQkNormRope.BlockCount(2L * 25104 * 16));
        Assert.Equal(1u, FusedQkNormRope.BlockCount(1));
        Assert.Equal(2u, FusedQkNormRope.BlockCount(17));
        // 12512 patches, 16 heads of 80: a thread per 8 elements, 256 threads a block.
        Assert.Equal(15640u, FusedVisionRope.BlockCount(2L * 12512 * 16 * 80));
        Assert.Equal(1u, FusedVisionRope.BlockCount(2 * 80));
    }

    [Fact]
    public void Kernel_names_follow_the_dtype_and_other_dtypes_are_refused()
    {
        Assert.Equal("vggt_qk_norm_rope_bf16", FusedQkNormRope.KernelName(ScalarType.BFloat16));
        Assert.Equal("qwen_vision_rope_f32", FusedVisionRope.KernelName(ScalarType.Float32));
        Assert.Throws<ArgumentException>(() => FusedQkNormRope.KernelName(ScalarType.Float64));
        Assert.Throws<ArgumentException>(() => FusedVisionRope.KernelName(ScalarType.Int32));
    }

    [Fact]
    public void Nvrtc_is_looked_for_next_to_the_pytorch_wheel_first()
    {
        string torchLib = "/opt/venv/lib/python3.12/site-packages/torch/lib";
        var candidates = Nvrtc.LibraryCandidates([Path.Combine(torchLib, "libc10_cuda.so"), Path.Combine(torchLib, "libtorch_cuda.so")]);

        Assert.Equal("/opt/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13", candidates[0]);
        Assert.Equal("/opt/venv/lib/python3.12/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12", candidates[1]);
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"], candidates.Skip(2));
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"], Nvrtc.LibraryCandidates([]));
    }

    [Theory]
    [InlineData("scalar_types.cuh", "struct BFloat16")]
    [InlineData("vision_rope.cu", "VISION_ROPE(BFloat16, bf16)")]
    [InlineData("qk_norm_rope.cu", "QK_NORM_ROPE(BFloat16, bf16)")]
    public void The_kernels_cuda_sources_are_embedded(string file, string expected)
    {
        Assert.Contains(expected, CudaSources.Read(file));
        var e = Assert.Throws<InvalidOperationException>(() => CudaSources.Read("missing.cu"));
        Assert.Contains("missing.cu", e.Message);
    }
}
