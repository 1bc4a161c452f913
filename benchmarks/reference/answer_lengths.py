"""Token counts of VSI-Bench's ground-truth answers under the real Qwen2.5-VL tokenizer (vocab.json + merges.txt),
to force the answer length of a random-weight model (which never emits eos) to the benchmark's typical one.

Byte-level BPE as Qwen2's tokenizer.json defines it: the Qwen2 split pattern (the same string as
src/SpatialMllm.Research/Text/Qwen2PreTokenizer.cs), GPT-2's byte-to-unicode map, merges by rank. Checked against the
46 llama.cpp qwen2 reference tokenizations with --check DIR (../shared/data/tokenizer-tests). Needs the `regex` module
(a dependency of transformers, so present wherever transformers is).

    python3 answer_lengths.py TOKENIZER_DIR TEST.jsonl [--check TOKENIZER_TESTS_DIR]

Prints JSON: per question type the token counts (min, median, mean, max) and the chosen max_new_tokens: 1 + the median
over the numeric (NA) answers, which covers the typical answer of every question type (an option letter is one
token, a number one token per digit and one for the point), plus one token for the eos a trained model would emit.
"""
import argparse, collections, json, os, statistics, sys
from functools import lru_cache

import regex

SPLIT = regex.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
MCQ_TYPES = {"object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
             "route_planning", "obj_appearance_order"}


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Qwen2Bpe:
    def __init__(self, folder):
        self.vocab = json.load(open(os.path.join(folder, "vocab.json"), encoding="utf-8"))
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            lines = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#version")]
        self.ranks = {tuple(l.split(" ")): i for i, l in enumerate(lines)}
        self.byte_map = bytes_to_unicode()
        self.bpe = lru_cache(maxsize=None)(self._bpe)

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return tuple(self.vocab[p] for p in parts)

    def encode(self, text):
        ids = []
        for piece in SPLIT.findall(text):
            ids.extend(self.bpe("".join(self.byte_map[b] for b in piece.encode("utf-8"))))
        return ids


def check(bpe, folder):
    inputs = open(os.path.join(folder, "ggml-vocab-qwen2.gguf.inp"), encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
    outputs = open(os.path.join(folder, "ggml-vocab-qwen2.gguf.out"), encoding="utf-8").read().split("\n")
    cases = list(zip(inputs, outputs))
    if cases and cases[-1] == ("", ""):  # both files end with a separator
        cases.pop()
    bad = [t for t, o in cases if bpe.encode(t) != [int(x) for x in o.split()]]
    return len(cases), bad


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tokenizer")
    parser.add_argument("dataset")
    parser.add_argument("--check", default=None)
    args = parser.parse_args()
    bpe = Qwen2Bpe(args.tokenizer)
    result = {}
    if args.check:
        n, bad = check(bpe, args.check)
        result["tokenizer_check"] = f"{n - len(bad)} of {n} llama.cpp qwen2 reference tokenizations equal"
        if bad:
            print(json.dumps(result), file=sys.stderr)
            sys.exit(f"tokenizer check failed on {len(bad)} cases, e.g. {bad[0]!r}")
    rows = [json.loads(l) for l in open(args.dataset, encoding="utf-8") if l.strip()]
    by_type = collections.defaultdict(list)
    for r in rows:
        by_type[r["question_type"]].append(len(bpe.encode(str(r["ground_truth"]))))

    def stats(counts):
        return dict(questions=len(counts), min=min(counts), median=statistics.median(counts),
                    mean=round(statistics.fmean(counts), 3), max=max(counts))

    result["per_type"] = {t: stats(c) for t, c in sorted(by_type.items())}
    mcq = [c for t, cs in by_type.items() if t in MCQ_TYPES for c in cs]
    na = [c for t, cs in by_type.items() if t not in MCQ_TYPES for c in cs]
    result["mcq"], result["na"], result["all"] = stats(mcq), stats(na), stats(mcq + na)
    result["max_new_tokens"] = int(round(statistics.median(na))) + 1
    print(json.dumps(result))


if __name__ == "__main__":
    main()
