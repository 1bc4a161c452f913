using System.CommandLine;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Verification;

namespace SpatialMllm.Cli.Commands;

/// <summary><c>spatial-mllm verify-fixture DIR</c>: our model against a reference fixture, tensor by tensor.</summary>
internal static class VerifyFixtureCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("DIR") { Description = "A fixture folder: config.json, model.safetensors and io.safetensors." };
        var tolerance = new Option<double>("--tolerance") { Description = "Max error (absolute, relative above 1).", DefaultValueFactory = _ => 1e-4 };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "cpu" };
        var dtype = new Option<string>("--dtype") { Description = "float32 (the fixture's) or bfloat16 (with a looser --tolerance)", DefaultValueFactory = _ => "float32" };
        var command = new Command("verify-fixture", "Compare every tensor of a reference fixture with what this implementation computes (float32 by default).")
            { folder, tolerance, device, dtype };
        command.SetAction(parse => CliSupport.Guard(parse, output =>
        {
            var checks = FixtureVerifier.Verify(parse.GetValue(folder)!, parse.GetValue(tolerance), TorchRuntime.ParseDevice(parse.GetValue(device)),
                TorchRuntime.ParseDType(parse.GetValue(dtype)));
            output.WriteLine($"{"tensor",-26} {"max abs err",12} {"max rel err",12} {"tolerance",10}  result");
            foreach (var c in checks)
                output.WriteLine($"{c.Name,-26} {c.MaxAbsError,12:E2} {c.MaxRelError,12:E2} {(c.Exact ? "exact" : c.Tolerance.ToString("E0")),10}  {(c.Passed ? "pass" : "FAIL")}{(c.Note is null ? "" : "  " + c.Note)}");
            int passed = checks.Count(c => c.Passed);
            output.WriteLine($"{passed} of {checks.Count} tensors within tolerance");
            return passed == checks.Count ? 0 : 1;
        }));
        return command;
    }
}
