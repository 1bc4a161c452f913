"""The steps of benchmarks/vsibench-full.sh (which sets the environment this reads; see its header).

    python3 benchmarks/vsibench-full.py videos   # the data folder: the real test.jsonl (or its subset) + one video per scene
    python3 benchmarks/vsibench-full.py run      # the seed's pipeline, SDPA backends, our `evaluate`, demo; the report
"""
import json, os, shlex, shutil, signal, statistics, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "benchmarks", "reference")
DATASET = os.environ.get("DATASET", os.path.join(ROOT, "..", "shared", "data", "vsibench", "test.jsonl"))
E = os.environ
OUT, WORK, MODE = E["OUT"], E["WORK"], E["MODE"]
DATA = os.path.join(WORK, "data")
START = float(E["SCRIPT_START"])


def log(message):
    line = f"[{time.time() - START:6.1f}s] {message}"
    print(line, flush=True)
    with open(os.path.join(OUT, "setup.log"), "a") as f:
        f.write(line + "\n")


def elapsed():
    return time.time() - START


def selected_rows():
    """The real rows; on a subset (VIDEOS / QUESTIONS_PER_VIDEO) the first scenes in (dataset, scene) order."""
    rows = [json.loads(l) for l in open(DATASET, encoding="utf-8") if l.strip()]
    scenes = sorted({(r["dataset"], r["scene_name"]) for r in rows})
    if E["VIDEOS"] != "all":
        scenes = scenes[:int(E["VIDEOS"])]
    keep, per_scene = set(scenes), {}
    cap = None if E["QUESTIONS_PER_VIDEO"] == "all" else int(E["QUESTIONS_PER_VIDEO"])
    picked = []
    for r in rows:
        key = (r["dataset"], r["scene_name"])
        if key in keep and (cap is None or per_scene.get(key, 0) < cap):
            per_scene[key] = per_scene.get(key, 0) + 1
            picked.append(r)
    return picked, scenes


def make_videos():
    """{dataset}/{scene}.mp4 for every scene, in parallel over the cores; testsrc2 with a hue of its own per scene."""
    rows, scenes = selected_rows()
    os.makedirs(DATA, exist_ok=True)
    with open(os.path.join(DATA, "test.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    stamp = f"{E['SIZE']} {E['FPS']} fps {E['DURATION']} s crf {E['CRF']}"
    stamp_path = os.path.join(DATA, "videos.txt")
    same = os.path.exists(stamp_path) and open(stamp_path).read() == stamp
    todo = [(i, d, s) for i, (d, s) in enumerate(scenes) if not (same and os.path.exists(os.path.join(DATA, d, s + ".mp4")))]
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    workers = os.cpu_count() or 1
    log(f"videos: {len(scenes)} scenes, {len(rows)} questions; making {len(todo)} videos ({stamp}) on {workers} cores")
    begin = time.time()

    def make(item):
        i, dataset, scene = item
        os.makedirs(os.path.join(DATA, dataset), exist_ok=True)
        hue = round(i * 360 / max(len(scenes), 1), 2)
        path = os.path.join(DATA, dataset, scene + ".mp4")
        t = time.time()
        subprocess.run([E["FFMPEG"], "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={E['SIZE']}:r={E['FPS']}:d={E['DURATION']},hue=h={hue}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", E["CRF"], "-pix_fmt", "yuv420p", "-threads", "1",
                        path + ".tmp.mp4"], check=True)
        os.replace(path + ".tmp.mp4", path)
        return time.time() - t

    info_path = os.path.join(WORK, "videos.json")
    if not todo and os.path.exists(info_path):  # all reused: keep what making them took
        info = json.load(open(info_path))
        open(stamp_path, "w").write(stamp)
        log(f"videos: reused {info}")
        return
    with ThreadPoolExecutor(workers) as pool:
        times = list(pool.map(make, todo))
    open(stamp_path, "w").write(stamp)
    sizes = [os.path.getsize(os.path.join(DATA, d, s + ".mp4")) for d, s in scenes]
    info = dict(videos=len(scenes), made=len(todo), wall_s=round(time.time() - begin, 1),
                median_encode_s=round(statistics.median(times), 2) if times else None,
                mean_mb=round(statistics.fmean(sizes) / 2**20, 2), cores=workers, settings=stamp)
    json.dump(info, open(info_path, "w"))
    log(f"videos: {info}")


class GpuSampler:
    """nvidia-smi every 200 ms in the background, into $OUT/nvidia-smi.csv."""

    def __init__(self):
        self.path = os.path.join(OUT, "nvidia-smi.csv")
        self.proc = None
        if MODE == "gpu":
            self.proc = subprocess.Popen(["nvidia-smi", "-i", "0", "--query-gpu=timestamp,utilization.gpu,memory.used",
                                          "--format=csv,noheader,nounits", "-lms", "200"], stdout=open(self.path, "w"), stderr=subprocess.DEVNULL)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()

    def window(self, begin, end):
        """Utilisation (%) and memory (MiB) of the samples between two time.time() instants."""
        if not self.proc:
            return None
        util, mem = [], []
        for line in open(self.path):
            parts = [p.strip() for p in line.split(",")]
            try:
                t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()  # local time, as time.time() reads it
                if begin <= t <= end:
                    util.append(float(parts[1]))
                    mem.append(float(parts[2]))
            except (ValueError, IndexError):
                continue
        if not util:
            return dict(samples=0)
        return dict(samples=len(util), util_mean=round(statistics.fmean(util), 1), util_median=statistics.median(util),
                    util_share_below_50=round(sum(u < 50 for u in util) / len(util), 3), memory_max_mib=max(mem))


def run_ours(total, max_new_tokens, cap_s):
    """`evaluate vsibench` over the data folder, events timestamped as they arrive: the protocol progress lines
    (SPATIAL_MLLM_PROGRESS=protocol: loading, each video's start, each answer) and the results file, polled."""
    folder = os.path.join(WORK, "run")
    shutil.rmtree(folder, ignore_errors=True)  # a fresh run: no resume, no lock or manifest of an earlier one
    os.makedirs(folder)
    results = os.path.join(folder, "results.jsonl")
    command = shlex.split(E["CLI"]) + ["evaluate", "vsibench", "--model", E["MODEL"], "--data", DATA, "--frames", E["FRAMES"],
                                       "--max-new-tokens", str(max_new_tokens), "--device", E["DEVICE"], "--out", results]
    log(f"ours: {' '.join(command)} (stopped after {cap_s:.0f} s)")
    events, answers = [], []
    begin = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=dict(os.environ, SPATIAL_MLLM_PROGRESS="protocol"))
    log_file = open(os.path.join(OUT, "evaluate.log"), "w")

    def read_output():
        for line in proc.stdout:
            now = time.time()
            if line.startswith("@progress "):
                try:
                    events.append((now, json.loads(line[len("@progress "):])))
                except json.JSONDecodeError:
                    pass
                continue
            log_file.write(f"[{now - begin:7.2f}] {line}")
            log_file.flush()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    offset, pending, stopped = 0, b"", None
    while True:
        finished = proc.poll() is not None
        if os.path.exists(results):
            with open(results, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            pending += chunk
            now = time.time()
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    record = json.loads(line)
                    answers.append((now, str(record["id"]), record.get("video")))
        if finished:
            break
        if stopped is None and time.time() - begin > cap_s:
            stopped = time.time() - begin
            log(f"ours: over its {cap_s:.0f} s, SIGTERM (it finishes the answer in progress and flushes)")
            proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    end = time.time()
    reader.join(timeout=5)
    log_file.close()
    return dict(exit=proc.returncode, begin=begin, end=end, events=events, answers=answers, stopped_after_s=stopped, total=total)


def analyse(run, sampler):
    begin, answers, events = run["begin"], run["answers"], run["events"]
    result = dict(exit=run["exit"], answered=len(answers), questions=run["total"], wall_s=round(run["end"] - begin, 2),
                  stopped_after_s=run["stopped_after_s"])
    if not answers:
        return result
    first, last = answers[0][0], answers[-1][0]
    # The runner's first report (0 answered) comes when the model is loaded; each video's start is announced.
    ready = next((t for t, e in events if (e.get("Progress") or e.get("progress") or {}).get("AnsweredNow", -1) == 0), None)
    video_starts = {}
    for t, e in events:
        p = e.get("Progress") or e.get("progress") or {}
        activity = p.get("Activity") or e.get("Activity") or ""
        if p.get("CurrentVideo") and activity.startswith("decoding") and p["CurrentVideo"] not in video_starts:
            video_starts[p["CurrentVideo"]] = t
    answering_s = last - first
    result.update(first_answer_s=round(first - begin, 2), last_answer_s=round(last - begin, 2), answering_s=round(answering_s, 2),
                  questions_per_s_answering=round((len(answers) - 1) / answering_s, 2) if answering_s > 0 else None,
                  questions_per_s_wall=round(len(answers) / (run["end"] - begin), 2),
                  model_load_s=round(ready - begin, 2) if ready else None)
    # Where the time goes, from outside: per video, its start (announced) to its first answer — decoding, encoding,
    # the shared prefix and the first question — and its other answers, one interval each.
    by_video, previous = {}, None
    for t, qid, video in answers:
        by_video.setdefault(video, []).append(t)
    switch, per_question = [], []
    for video, times in by_video.items():
        start = video_starts.get(video)
        if start is not None and start <= times[0]:
            switch.append(times[0] - start)
        per_question += [b - a for a, b in zip(times, times[1:])]
    # Every answer's gap to the one before (first answers of videos included), to account for the whole window.
    gaps = [b[0] - a[0] for a, b in zip(answers, answers[1:])]
    within = sum(per_question)
    result["split"] = dict(
        load_s=result["model_load_s"],
        before_first_answer_s=round(first - begin, 2),
        video_starts_seen=len(video_starts),
        video_to_first_answer_s_total=round(sum(switch), 2) if switch else None,
        video_to_first_answer_ms_median=round(statistics.median(switch) * 1e3, 1) if switch else None,
        other_answers_s_total=round(within, 2),
        other_answer_ms_median=round(statistics.median(per_question) * 1e3, 2) if per_question else None,
        answer_gap_ms_median=round(statistics.median(gaps) * 1e3, 2) if gaps else None,
        videos_answered=len(by_video))
    result["gpu"] = sampler.window(first, last)
    return result


def run_step(name, command, timeout, log_path=None):
    """A helper process with a time limit; its output to setup.log. Returns the exit code (or 'timeout')."""
    log(f"{name}: {' '.join(command)}")
    t = time.time()
    with open(log_path or os.path.join(OUT, "setup.log"), "a") as f:
        try:
            code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    log(f"{name}: exit {code} after {time.time() - t:.1f} s")
    return code


def main_run():
    budget = float(E["BUDGET_S"])
    rows = [l for l in open(os.path.join(DATA, "test.jsonl")) if l.strip()]
    total = len(rows)
    lengths = json.loads(subprocess.run([sys.executable, os.path.join(REFERENCE, "answer_lengths.py"), E["TOKENIZER"], DATASET],
                                        capture_output=True, text=True, check=True).stdout)
    max_new_tokens = int(E["MAX_NEW_TOKENS"] or lengths["max_new_tokens"])
    videos = json.load(open(os.path.join(WORK, "videos.json")))
    log(f"answer length: {max_new_tokens} tokens (numeric ground truths: median {lengths['na']['median']}, option letters 1; + eos)")
    report = dict(mode=MODE, questions=total, videos=videos, frames=int(E["FRAMES"]), sampler="uniform", max_new_tokens=max_new_tokens,
                  answer_lengths=lengths, model=E["MODEL"], setup_s=round(elapsed(), 1))
    if MODE == "gpu":
        report["device"] = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    else:
        report["device"] = "CPU (dry run)"

    seed = None
    if MODE == "gpu" and E.get("SEED", "1") == "1":
        seed_json = os.path.join(OUT, "seed-pipeline.json")
        code = run_step("seed pipeline", [sys.executable, os.path.join(REFERENCE, "seed_pipeline.py"), E["QWEN_CONFIG"], "--ref", E["REF"],
                                          "--tokenizer", E["TOKENIZER"], "--data", DATA, "--out", seed_json,
                                          "--questions", E["SEED_QUESTIONS"], "--max-new-tokens", str(max_new_tokens), "--frames", E["FRAMES"],
                                          "--budget-s", E["SEED_BUDGET_S"], "--total-questions", str(total),
                                          "--ffmpeg", E["FFMPEG"], "--ffprobe", E["FFPROBE"]], timeout=float(E["SEED_BUDGET_S"]) + 120)
        if code == 0 and os.path.exists(seed_json):
            seed = json.load(open(seed_json))
        report["seed_exit"] = code
    if E.get("SDPA") == "1":
        sdpa_json = os.path.join(OUT, "sdpa-backends.json")
        run_step("sdpa backends", [sys.executable, os.path.join(REFERENCE, "sdpa_backends.py"), sdpa_json], timeout=90)
        if os.path.exists(sdpa_json):
            report["sdpa"] = {k: v for k, v in json.load(open(sdpa_json)).items() if k in ("tokens", "backends", "fastest")}

    reserve = 45 if E.get("DEMO") == "1" else 15
    cap = budget - elapsed() - reserve
    sampler = GpuSampler()
    try:
        run = run_ours(total, max_new_tokens, cap)
    finally:
        sampler.stop()  # before reading its file: nvidia-smi may buffer what it writes
    ours = analyse(run, sampler)
    report["ours"] = ours
    log(f"ours: {json.dumps({k: v for k, v in ours.items() if k != 'split'})}")

    if E.get("DEMO") == "1" and budget - elapsed() > 40:
        first_video = json.loads(rows[0])
        demo_log = os.path.join(OUT, "demo.log")
        run_step("demo (stage timings of one question)", shlex.split(E["CLI"]) + [
            "demo", "--model", E["MODEL"], "--video", os.path.join(DATA, first_video["dataset"], first_video["scene_name"] + ".mp4"),
            "--frames", E["FRAMES"], "--max-new-tokens", str(max_new_tokens), "--device", E["DEVICE"]],
                 timeout=max(10, budget - elapsed() - 5), log_path=demo_log)
        if os.path.exists(demo_log):
            text = [l.rstrip() for l in open(demo_log)]
            start = next((i for i, l in enumerate(text) if l.startswith("loaded")), len(text))
            report["demo_stages"] = text[start:]

    complete = ours.get("exit") == 0 and ours.get("answered", 0) >= total
    if complete:
        ours_total = ours["wall_s"]
    else:  # stopped or failed: what all of it would take at the rate reached, video switches included
        load, last, n = ours.get("model_load_s"), ours.get("last_answer_s"), ours.get("answered", 0)
        ours_total = round(load + (last - load) * total / n, 1) if load is not None and last and n else None
    report["ours_total_s"] = ours_total
    report["ours_complete"] = complete
    if seed:
        report["seed"] = {k: v for k, v in seed.items() if k != "per_question"}
        report["speedup_wall"] = round(seed["extrapolated_total_s"] / ours_total, 1) if ours_total else None
    report["target"] = dict(total_s=300, speedup=20, met=bool(MODE == "gpu" and complete and ours_total <= 300 and seed
                                                               and (report.get("speedup_wall") or 0) >= 20))
    json.dump(report, open(os.path.join(OUT, "vsibench-full.json"), "w"), indent=2)
    lines = write_markdown(report, seed, complete)
    print("\n".join(lines))
    return 0 if complete else 1


def write_markdown(report, seed, complete):
    ours, v = report["ours"], report["videos"]
    split, gpu = ours.get("split", {}), ours.get("gpu") or {}
    fmt = lambda x, unit="": "—" if x is None else f"{x}{unit}"
    stopped = "" if complete or not ours.get("stopped_after_s") else f" (stopped at its {ours['stopped_after_s']:.0f} s cap)"
    lines = [
        f"# All of VSI-Bench on one device ({report['device']})", "",
        f"{report['questions']} real VSI-Bench questions (`test.jsonl`) over {v['videos']} synthetic videos, one per scene of the "
        f"real set at `{{dataset}}/{{scene}}.mp4` ({v['settings']}: testsrc2 with a hue of its own, x264 ultrafast; made in "
        f"{v['wall_s']} s on {v['cores']} cores, {v['mean_mb']} MB each). Model `{report['model']}` "
        f"({'full-size random weights, bf16' if report['mode'] == 'gpu' else 'tiny random checkpoint, fp32'}), "
        f"{report['frames']} frames, uniform, {report['max_new_tokens']} new tokens per answer (random weights never emit eos: "
        f"1 + the median token count of the numeric ground truths, {report['answer_lengths']['na']['median']:g}; option letters are 1 token).", "",
        "| | ours (`evaluate vsibench`) | seed's pipeline (per question, extrapolated) |",
        "| --- | ---: | ---: |",
        f"| questions answered | {ours.get('answered')} of {report['questions']}{stopped} | "
        f"{str(seed['questions_timed']) + ' timed' if seed else '—'} |",
        f"| total time | {fmt(report['ours_total_s'], ' s')}{'' if complete else ' (projected: load + the time per answer so far × all)'} | "
        + (f"{seed['extrapolated_total_s']} s ({seed['median_ms']} ms × {report['questions']}) |" if seed else "— |"),
        f"| questions/s | {fmt(ours.get('questions_per_s_answering'))} answering, {fmt(ours.get('questions_per_s_wall'))} wall | "
        f"{fmt(seed and round(1000 / seed['median_ms'], 3))} |",
        f"| model load | {fmt(ours.get('model_load_s'), ' s')} | {str(seed['model_build_s']) + ' s (random init)' if seed else '—'} |",
        f"| first answer after | {fmt(ours.get('first_answer_s'), ' s')} | |",
        f"| GPU utilisation while answering | mean {fmt(gpu.get('util_mean'), ' %')}, median {fmt(gpu.get('util_median'), ' %')} "
        f"({fmt(gpu.get('samples'))} samples, {fmt(None if gpu.get('util_share_below_50') is None else round(gpu['util_share_below_50'] * 100), ' %')} of them under 50 %), "
        f"max memory {fmt(gpu.get('memory_max_mib'), ' MiB')} | |",
        "", f"**Speed-up: {fmt(report.get('speedup_wall'), '×')}** (the seed's extrapolated total over ours). "
        + (f"Target (≤ 300 s, ≥ 20×): **{'met' if report['target']['met'] else 'not met'}**." if report["mode"] == "gpu"
           else "CPU dry run: the seed's pipeline is not run and the target does not apply."), "",
        "## Where the time goes", "",
        "| ours | |", "| --- | ---: |",
        f"| start to model loaded | {fmt(split.get('load_s'), ' s')} |",
        f"| start to first answer | {fmt(split.get('before_first_answer_s'), ' s')} |",
        f"| each video, announced → its first answer (decode, encode, shared prefix, first question): total / median | "
        f"{fmt(split.get('video_to_first_answer_s_total'), ' s')} / {fmt(split.get('video_to_first_answer_ms_median'), ' ms')} ({fmt(split.get('video_starts_seen'))} videos) |",
        f"| each further answer of a video: total / median | {fmt(split.get('other_answers_s_total'), ' s')} / {fmt(split.get('other_answer_ms_median'), ' ms')} |",
        f"| after the last answer (scoring, exit) | {fmt(ours.get('last_answer_s') and round(ours['wall_s'] - ours['last_answer_s'], 2), ' s')} |",
        f"| median gap between consecutive answers | {fmt(split.get('answer_gap_ms_median'), ' ms')}"
        + (f" (the target's budget: 300 s / {report['questions']} = {300e3 / report['questions']:.1f} ms a question, all included) |"
           if report["mode"] == "gpu" else " |"),
    ]
    if report.get("demo_stages"):
        lines += ["", "One question, `spatial-mllm demo` (whole prompt, no sharing), stage by stage:", "", "```"] + report["demo_stages"] + ["```"]
    if report["mode"] == "gpu" and not seed and "seed_exit" in report:
        lines += ["", f"The seed's pipeline gave no result (exit {report.get('seed_exit')}): see `setup.log`."]
    if seed:
        lines += ["", f"Seed's pipeline, median of {seed['questions_timed']} questions ({len({q['video'] for q in seed['per_question']})} videos, "
                  f"{len({q['question_type'] for q in seed['per_question']})} question types; frames read with {seed['frame_reader']}; "
                  f"preprocessing: {seed['preprocess']}):", "",
                  "| stage | ms |", "| --- | ---: |"] + [f"| {k[:-3].replace('_', ' ')} | {val} |" for k, val in seed["median_stage_ms"].items()]
    if report.get("sdpa"):
        lines += ["", f"SDPA on VGGT's global attention, 128 frames ({report['sdpa']['tokens']} tokens, 16 heads × 64, bf16):", "",
                  "| backend | ms | TFLOP/s |", "| --- | ---: | ---: |"] + [
                     f"| {n} | {b.get('ms', '—')} | {b.get('tflops', b.get('error', ''))} |" for n, b in report["sdpa"]["backends"].items()]
    open(os.path.join(OUT, "vsibench-full.md"), "w").write("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    if sys.argv[1] == "videos":
        make_videos()
    else:
        sys.exit(main_run())
