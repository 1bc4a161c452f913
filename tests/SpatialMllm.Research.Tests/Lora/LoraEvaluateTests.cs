using System.CommandLine;
using SpatialMllm.Cli.Commands;
using SpatialMllm.Research.Lora;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Tests.Evaluation;
using TorchSharp;

namespace SpatialMllm.Research.Tests.Lora;

public class LoraEvaluateTests
{
    static (int Code, string Output, string Error) Invoke(params string[] args)
    {
        var root = new RootCommand { EvaluateCommand.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Evaluate_with_an_adapter_records_it_and_does_not_mix_its_answers_with_the_base_models()
    {
        var mini = new MiniVsiBench("lora-evaluate", realVideos: true);
        string model = TestPaths.NewTempDir("lora-eval-model"), adapter = TestPaths.NewTempDir("lora-eval-adapter");
        TinyCheckpoint.Create(model);
        using (var loaded = SpatialMllmModel.Load(model, torch.CPU))
            LoraModel.Apply(loaded, new LoraConfig { R = 2, LoraAlpha = 4, TargetModules = ["q_proj", "v_proj"] }).save_pretrained(adapter);
        string results = Path.Combine(mini.Root, "results.jsonl");
        string[] common = ["evaluate", "vsibench", "--model", model, "--data", mini.Root, "--frames", "4", "--device", "cpu", "--max-new-tokens", "3", "--out", results];

        var (code, output, error) = Invoke([.. common, "--adapter", adapter]);
        Assert.True(code == 0, output + error);
        string manifest = File.ReadAllText(Path.Combine(mini.Root, "results.run.json"));
        Assert.Contains(Path.GetFullPath(adapter), manifest);
        Assert.Contains("adapter.sha256", manifest);

        var (baseCode, _, baseError) = Invoke(common);
        Assert.Equal(1, baseCode);
        Assert.Contains("adapter.folder", baseError);

        var (missingCode, _, missingError) = Invoke([.. common, "--adapter", Path.Combine(adapter, "nowhere")]);
        Assert.Equal(1, missingCode);
        Assert.Contains("is not a LoRA adapter folder", missingError);
    }
}
