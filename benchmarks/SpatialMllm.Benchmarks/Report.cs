using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SpatialMllm.Benchmarks;

/// <summary>Merges the parts' JSON and the Python reference's into one table (stdout) and results/&lt;date&gt;-&lt;machine&gt;.md/.json.</summary>
internal static class Report
{
    /// <summary>The issue's reference figures (H100, PyTorch 2.11 eager + SDPA, random full-size weights, bf16, 16 frames at 476×644).</summary>
    static readonly Dictionary<string, double> IssueReference = new()
    {
        ["vision_tower"] = 321, ["vggt_aggregator"] = 381, ["connector"] = 4, ["decoder_prefill"] = 49, ["decode_per_token"] = 31.7,
        ["whole_sample"] = 321 + 381 + 4 + 49 + 32 * 31.7, ["sampling"] = 6460,
        ["train_step"] = 852, ["train_step_checkpointing"] = 852, // issue 15: ref_train_step.py, H200, measured once
    };
    static readonly Dictionary<string, double> IssuePeak = new() { ["whole_sample"] = 15.2, ["sampling"] = 38, ["train_step"] = 39.9 };

    /// <summary>Target as (kind, value): "ratio" ≤ value × reference, "ms" ≤ value, "GiB" peak ≤ value.</summary>
    static readonly Dictionary<string, (string Kind, double Value)> Targets = new()
    {
        ["vision_tower"] = ("ratio", 0.25), ["vggt_aggregator"] = ("ratio", 0.8), ["decode_per_token"] = ("ms", 8), ["whole_sample"] = ("ratio", 0.33),
        ["train_step"] = ("ratio", 0.7), ["lora_train_step_checkpointing"] = ("GiB", 24),
    };

    /// <summary>Python reference keys for each stage.</summary>
    static readonly Dictionary<string, string> PythonKey = new()
    {
        ["vision_tower"] = "vision_tower_ms", ["vggt_aggregator"] = "vggt_aggregator_ms", ["connector"] = "connector_ms",
        ["decoder_prefill"] = "decoder_prefill_ms", ["decode_per_token"] = "decode_ms_per_token", ["whole_sample"] = "whole_sample_ms",
    };

    public static void Write(string outDir, string referencePath, string machine, string resultsDir, string command)
    {
        JsonNode? Load(string path) => File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) : null;
        var main = Load(Path.Combine(outDir, "main.json"));
        var sampling = Load(Path.Combine(outDir, "sampling.json"));
        var fixture = Load(Path.Combine(outDir, "fixture.json"));
        var python = referencePath.Length > 0 ? Load(referencePath) : null;
        string date = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

        var md = new StringBuilder();
        md.AppendLine($"# Spatial-MLLM GPU benchmark — {date}, {machine}");
        md.AppendLine();
        md.AppendLine($"GPU: {main?["gpu"] ?? sampling?["gpu"] ?? Load(Path.Combine(outDir, "train-step.json"))?["gpu"] ?? "?"}. Python reference: torch {python?["torch"] ?? "?"}, transformers {python?["transformers"] ?? "?"}.");
        md.AppendLine("Full-size Spatial-MLLM (Qwen2.5-VL-3B + VGGT-1B aggregator + mlp_add connector), random weights, bf16, cuda; " +
                      $"one sample of 16 frames at 476×644 (grid 8×34×46, 12512 patches, 3128 video tokens, {main?["tokens"] ?? 3190} tokens). " +
                      $"Median of {main?["runs"] ?? 5} runs after a warm-up, cuda synchronize around each run.");
        md.AppendLine();
        if (command.Length > 0) { md.AppendLine("Command (on the GPU machine, ours and the reference in one call):"); md.AppendLine(); md.AppendLine("```"); md.AppendLine(command); md.AppendLine("```"); md.AppendLine(); }
        md.AppendLine("| stage | ours (ms) | reference, same machine (ms) | issue reference (ms) | ratio | target | met | ours peak (GiB, NVML) | ref peak (GiB) |");
        md.AppendLine("|---|---:|---:|---:|---:|---|---|---:|---:|");
        var rows = new JsonArray();
        Console.WriteLine();
        Console.WriteLine($"{"stage",-26} {"ours",10} {"ref(py)",10} {"ref(issue)",10} {"ratio",7} {"target",12} {"met",4} {"peak GiB",9}");
        void Row(string key, string label, JsonNode? ours, double? py, double? pyPeak)
        {
            if (ours is null) return; // a part this run did not take (train-steps.sh reports its rows alone)
            double? ms = ours?["ms"]?.GetValue<double>();
            double? peak = ours?["peak_gib"]?.GetValue<double>();
            double? issue = IssueReference.TryGetValue(key, out var r) ? r : null;
            double? reference = py ?? issue;
            double? ratio = ms.HasValue && reference.HasValue ? ms / reference : null;
            string target = "", met = "";
            if (Targets.TryGetValue(key, out var t))
            {
                target = t.Kind switch { "ratio" => $"≤ {t.Value:0.##}×", "GiB" => $"peak ≤ {t.Value} GiB", _ => $"≤ {t.Value} ms" };
                bool? ok = t.Kind switch { "ratio" => ratio <= t.Value, "GiB" => peak <= t.Value, _ => ms <= t.Value };
                met = ok is null ? "?" : ok.Value ? "yes" : "NO";
            }
            double? refPeak = pyPeak ?? (IssuePeak.TryGetValue(key, out var ip) ? ip : null);
            string F(double? v, string f = "F1") => v.HasValue ? v.Value.ToString(f, CultureInfo.InvariantCulture) : "—";
            md.AppendLine($"| {label} | {F(ms)} | {F(py)} | {F(issue)} | {F(ratio, "F3")} | {target} | {met} | {F(peak, "F2")} | {F(refPeak, "F2")} |");
            Console.WriteLine($"{label,-26} {F(ms),10} {F(py),10} {F(issue),10} {F(ratio, "F3"),7} {target,12} {met,4} {F(peak, "F2"),9}");
            rows.Add(new JsonObject { ["stage"] = key, ["ours_ms"] = ms, ["reference_ms"] = py, ["issue_reference_ms"] = issue, ["ratio"] = ratio, ["target"] = target, ["met"] = met, ["peak_gib"] = peak, ["reference_peak_gib"] = refPeak });
        }
        double? Py(string key) => python?[key]?.GetValue<double>();
        var stages = main?["stages"];
        Row("vision_tower", "vision tower", stages?["vision_tower"], Py("vision_tower_ms"), null);
        Row("vggt_aggregator", "VGGT aggregator (layer −1)", stages?["vggt_aggregator"], Py("vggt_aggregator_ms"), null);
        Row("connector", "connector", stages?["connector"], Py("connector_ms"), null);
        Row("decoder_prefill", "decoder prefill (3190)", stages?["decoder_prefill"], Py("decoder_prefill_ms"), null);
        Row("decode_per_token", "decode, ms/token", stages?["decode_per_token"], Py("decode_ms_per_token"), null);
        Row("whole_sample", "whole sample (enc+pre+32)", stages?["whole_sample"], Py("whole_sample_ms"), Py("whole_sample_peak_nvml_gib"));
        Row("sampling", "space-aware sampling 128f", sampling?["sampling"], null, null);
        // One SFT step (train-step part) against ref_train_step.py's JSON, run in the same command (run-gpu.sh).
        var trainStep = Load(Path.Combine(outDir, "train-step.json"));
        var trainStepCheckpointing = Load(Path.Combine(outDir, "checkpointing", "train-step.json"));
        var referenceTrain = Load(Path.Combine(outDir, "reference-train-step.json"));
        double? RefTrain(string key) => referenceTrain?[key]?.GetValue<double>();
        Row("train_step", "SFT step (16f 476×644)", trainStep?["step"], RefTrain("step_ms_median"), RefTrain("peak_reserved_gib"));
        Row("train_step_checkpointing", "SFT step, grad. checkpointing", trainStepCheckpointing?["step"], RefTrain("step_ms_median"), RefTrain("peak_reserved_gib"));
        // LoRA (issue 23): beside the full step and the reference's full step; its goal is a peak under 24 GiB.
        Row("lora_train_step", "LoRA r16 step", Load(Path.Combine(outDir, "lora", "train-step.json"))?["step"], RefTrain("step_ms_median"), RefTrain("peak_reserved_gib"));
        Row("lora_train_step_checkpointing", "LoRA r16 step, grad. ckpt.", Load(Path.Combine(outDir, "lora-checkpointing", "train-step.json"))?["step"],
            RefTrain("step_ms_median"), RefTrain("peak_reserved_gib"));
        md.AppendLine();
        md.AppendLine("Peak memory: ours is NVML's device memory in use during the stage (CUDA context + everything the caching allocator " +
                      "holds, freed blocks included; TorchSharp has no allocator statistics), a running maximum within one process " +
                      "(stages run in the order of the table; sampling and the fixture run in processes of their own). " +
                      "The reference's `max_memory_allocated` counts live tensors only; its NVML figure is given beside it where measured.");
        if (python != null)
        {
            md.AppendLine();
            md.AppendLine($"Python reference peaks: max_memory_allocated {python["peak_allocated_gib"] ?? python["peak_gib"]} GiB, " +
                          $"max_memory_reserved {python["peak_reserved_gib"] ?? "?"} GiB, NVML {python["peak_nvml_gib"] ?? "?"} GiB (whole run).");
        }
        if (main?["evaluate"] is { } ev)
        {
            md.AppendLine();
            md.AppendLine($"`evaluate` with the feature cache (1 video × {ev["questions"]} questions, {ev["answer_tokens"]} tokens each, evaluation decoding): " +
                          $"cached {ev["cached"]?["ms"]?.GetValue<double>():F0} ms ({ev["questions_per_s_cached"]?.GetValue<double>():F2} questions/s) vs " +
                          $"uncached {ev["uncached"]?["ms"]?.GetValue<double>():F0} ms ({ev["questions_per_s_uncached"]?.GetValue<double>():F2} questions/s).");
        }
        if (stages?["decode_per_token_eval_sampling"] is { } es)
            md.AppendLine($"\nDecode with the evaluation decoding (top-p sort + repetition penalty each step): {es["ms"]?.GetValue<double>():F2} ms/token.");
        if (main?["parts"] is JsonObject parts && parts.Count > 0)
        {
            md.AppendLine(); md.AppendLine("Sub-parts (ms):"); md.AppendLine();
            foreach (var kv in parts) md.AppendLine($"- {kv.Key}: {kv.Value}");
        }
        if (sampling != null)
            md.AppendLine($"\nSampling: {sampling["frames"]} frames at {sampling["height"]}×{sampling["width"]}; aggregator alone {sampling["aggregator_only"]?["ms"]?.GetValue<double>():F0} ms; " +
                          $"last run predict {sampling["last_predict_ms"]?.GetValue<double>():F0} ms + select {sampling["last_select_ms"]?.GetValue<double>():F0} ms" +
                          (sampling["select_error"] is { } se ? $" (selector on random weights: {se})" : "") + ".");
        if (fixture?["tensors"] is JsonObject tensors)
        {
            md.AppendLine(); md.AppendLine("## bf16 vs fp32 on cuda (tiny fixture, max abs error)"); md.AppendLine();
            md.AppendLine("| tensor | fp32 vs fixture | bf16 vs fixture | bf16 vs fp32 | max abs of reference | argmax / token agreement |");
            md.AppendLine("|---|---:|---:|---:|---:|---|");
            foreach (var kv in tensors)
            {
                if (kv.Value is not JsonObject o || !o.ContainsKey("bf16_vs_fp32")) continue;
                string agree = o.ContainsKey("argmax_agreement_bf16_vs_fp32")
                    ? $"argmax bf16=fp32 {o["argmax_agreement_bf16_vs_fp32"]}, bf16=fixture {o["argmax_agreement_bf16_vs_fixture"]}, fp32=fixture {o["argmax_agreement_fp32_vs_fixture"]}"
                    : o.ContainsKey("tokens_equal_bf16_vs_fixture") ? $"bf16 tokens = fixture {o["tokens_equal_bf16_vs_fixture"]}" : "";
                md.AppendLine($"| {kv.Key} | {o["fp32_vs_fixture"]?.GetValue<double>():G3} | {o["bf16_vs_fixture"]?.GetValue<double>():G3} | {o["bf16_vs_fp32"]?.GetValue<double>():G3} | {o["max_abs_reference"]?.GetValue<double>():G3} | {agree} |");
            }
            if (tensors["verify_fixture_cuda_fp32"] is { } vf)
                md.AppendLine($"\nverify-fixture on cuda in fp32: {vf["passed"]}/{vf["total"]} tensors within 1e-4 {vf["failed"]?.ToJsonString()}.");
        }
        var all = new JsonObject
        {
            ["date"] = date, ["machine"] = machine, ["command"] = command, ["rows"] = rows,
            ["main"] = main?.DeepClone(), ["sampling"] = sampling?.DeepClone(), ["fixture"] = fixture?.DeepClone(), ["python_reference"] = python?.DeepClone(),
        };
        string dir = resultsDir.Length > 0 ? resultsDir : outDir;
        Directory.CreateDirectory(dir);
        string stem = Path.Combine(dir, $"{date}-{machine}");
        File.WriteAllText(stem + ".md", md.ToString());
        File.WriteAllText(stem + ".json", all.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"\nwrote {stem}.md and .json");
    }
}
