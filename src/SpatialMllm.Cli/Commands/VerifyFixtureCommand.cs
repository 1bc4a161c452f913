using System.CommandLine;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Verification;

namespace SpatialMllm.Cli.Commands;

/// <summary><c>spatial-mllm verify-fixture DIR</c>: our model against a reference fixture, tensor by tensor; with
/// <c>train.safetensors</c> in DIR also the fine-tuning steps (losses, grad norms, gradients, AdamW deltas, schedule).</summary>
internal static class VerifyFixtureCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("DIR") { Description = "A fixture folder: config.json, model.safetensors and io.safetensors (and train.safetensors/train.json: the SFT checks, always in float32)." };
        var tolerance = new Option<double>("--tolerance") { Description = "Max error (absolute, relative above 1).", DefaultValueFactory = _ => 1e-4 };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "cpu" };
        var dtype = new Option<string>("--dtype") { Description = "float32 (the fixture's) or bfloat16 (with a looser --tolerance)", DefaultValueFactory = _ => "float32" };
        var command = new Command("verify-fixture", "Compare every tensor of a reference fixture with what this implementation computes (float32 by default).")
            { folder, tolerance, device, dtype };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            string dir = parse.GetValue(folder)!;
            var onDevice = TorchRuntime.ParseDevice(parse.GetValue(device));
            var checks = FixtureVerifier.Verify(dir, parse.GetValue(tolerance), onDevice, TorchRuntime.ParseDType(parse.GetValue(dtype))).ToList();
            if (TrainingFixtureVerifier.HasTrainingFixture(dir)) checks.AddRange(TrainingFixtureVerifier.Verify(dir, onDevice));
            int width = Math.Max(26, checks.Max(c => c.Name.Length));
            output.WriteLine($"{"tensor".PadRight(width)} {"max abs err",12} {"max rel err",12} {"tolerance",10}  result");
            foreach (var c in checks)
                output.WriteLine($"{c.Name.PadRight(width)} {c.MaxAbsError,12:E2} {c.MaxRelError,12:E2} {(c.Exact ? "exact" : c.Tolerance.ToString("E0")),10}  {(c.Passed ? "pass" : "FAIL")}{(c.Note is null ? "" : "  " + c.Note)}");
            int passed = checks.Count(c => c.Passed);
            output.WriteLine($"{passed} of {checks.Count} tensors within tolerance");
            return passed == checks.Count ? 0 : 1;
        }));
        return command;
    }
}
