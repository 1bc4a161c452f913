using System.CommandLine;
using System.Diagnostics;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Cli.Commands;

/// <summary><c>spatial-mllm env</c>: is libtorch loaded, which devices are there, and does a bf16 matmul and SDPA run.</summary>
internal static class EnvCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "auto" };
        var command = new Command("env", "Check the Torch runtime: libtorch, devices, a bf16 matmul and attention.") { device };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            TorchRuntime.EnsureLoaded();
            var d = TorchRuntime.ParseDevice(parse.GetValue(device));
            output.WriteLine($"TorchSharp libtorch {torch.__version__}; CUDA available: {torch.cuda.is_available()} ({torch.cuda.device_count()} devices); using {d}");
            using var scope = torch.NewDisposeScope();
            var a = torch.randn(4096, 4096, dtype: ScalarType.BFloat16, device: d);
            var q = torch.randn(1, 16, 4096, 128, dtype: ScalarType.BFloat16, device: d);
            for (int warm = 0; warm < 2; warm++) { a.matmul(a); nn.functional.scaled_dot_product_attention(q, q, q, is_casual: true); }
            Synchronize(d);
            var clock = Stopwatch.StartNew();
            const int runs = 10;
            for (int i = 0; i < runs; i++) a.matmul(a);
            Synchronize(d);
            double matmulSeconds = clock.Elapsed.TotalSeconds / runs;
            clock.Restart();
            for (int i = 0; i < runs; i++) nn.functional.scaled_dot_product_attention(q, q, q, is_casual: true);
            Synchronize(d);
            double sdpaSeconds = clock.Elapsed.TotalSeconds / runs;
            output.WriteLine($"bf16 matmul 4096³: {matmulSeconds * 1e3:F2} ms ({2.0 * Math.Pow(4096, 3) / matmulSeconds / 1e12:F1} TFLOP/s)");
            output.WriteLine($"bf16 causal SDPA 16×4096×128: {sdpaSeconds * 1e3:F2} ms");
            if (d.type == DeviceType.CUDA)
            {
                // The fast paths fall back silently when missing; say which are in use.
                output.WriteLine($"decode steps as CUDA graphs: {LibTorchCuda.UnavailableReason ?? "yes"}");
                output.WriteLine($"fused kernels (NVRTC): {CudaDriver.UnavailableReason ?? Nvrtc.UnavailableReason ?? "yes"}");
                output.WriteLine($"TF32 in float32 (cuBLAS / cuDNN): {torch.backends.cuda.matmul.allow_tf32} / {torch.backends.cudnn.allow_tf32}");
            }
            return 0;
        }));
        return command;
    }

    static void Synchronize(Device d)
    {
        if (d.type == DeviceType.CUDA) torch.cuda.synchronize(d);
    }
}
