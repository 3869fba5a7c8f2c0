"""Sweeps, the leaderboard, reports and citations on the tiny stream: expansion, local and Ray backends, and a sweep
killed with SIGKILL that finishes on rerun with the results of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from clgraft.config import TEST_SUBSET, RunConfig
from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.io.records import write_json
from clgraft.methods import METHODS
from clgraft.sweeps.sweep import expand, load_sweep, longest_first, run_sweep, sweep_progress, write_manifest

TINY = Path(__file__).resolve().parent.parent / "tasks" / "sweeps" / "tiny.yaml"


def _sweep_file(tmp_path: Path, model_dir: Path, **over) -> Path:
    doc = yaml.safe_load(TINY.read_text())
    doc.update(model=str(model_dir), **over)
    doc["run"] = {**doc["run"], "max_length": 32}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _cli(path: Path, results: Path) -> list[str]:
    """`clgraft sweep` as a separate process (to be killed, or run twice at once)."""
    return [sys.executable, "-c", "from clgraft.cli import main; main()", "sweep", str(path), "--results", str(results)]


def _results(folder: Path) -> dict:
    out = {}
    for path in sorted((folder / "runs").glob("*/run.json")):
        rec = json.loads(path.read_text())
        out[path.parent.name] = rec["R"]
    return out


def test_expand_crosses_streams_methods_grid_and_seeds(tmp_path):
    sweep, path = load_sweep(str(TINY))
    cells = expand(sweep, Registry.discover(), path)
    assert len(cells) == 4 and {c.seed for c in cells} == {1, 2}
    assert [c.method for c in cells] == ["naive", "naive", "graft-compose", "graft-compose"]
    assert cells[2].method_options == {"sparsity": 0.01} and cells[0].steps == 8 and cells[0].max_test == 50
    standard, path = load_sweep("standard")
    cells = expand(standard, Registry.discover(), path)
    per_stream = {
        e.stream: len(e.methods or standard.methods) * len(e.seeds or standard.seeds) for e in standard.streams
    }
    assert len(cells) == sum(per_stream.values()) and {c.stream for c in cells} == set(per_stream)


def test_streams_choose_their_methods_and_seeds_and_vary_crosses_run_settings(tmp_path, tiny_model_dir):
    """A stream entry's own methods and seeds replace the sweep's for that stream only; `vary` runs every method and
    seed once per value of a run setting (a pilot's steps)."""
    own = {"stream": "tiny", "methods": ["naive"], "seeds": [7]}
    path = _sweep_file(tmp_path, tiny_model_dir, streams=[own, {"stream": "tiny"}], vary={"steps": [4, 8]})
    sweep, where = load_sweep(str(path))
    cells = expand(sweep, Registry.discover(), where)
    assert [(c.method, c.seed, c.steps) for c in cells[:2]] == [("naive", 7, 4), ("naive", 7, 8)]
    rest = {(c.method, c.seed, c.steps) for c in cells[2:]}
    assert rest == {(m, s, n) for m in ("naive", "graft-compose") for s in (1, 2) for n in (4, 8)} and len(cells) == 10
    assert {c.max_test for c in cells} == {50}  # the settings not varied stay as `run` has them
    pilot, where = load_sweep("claims-pilot")  # LP-FT and frozen embeddings are run settings a sweep can fix or vary
    cells = expand(pilot, Registry.discover(), where)
    assert {(c.steps, c.probe_steps) for c in cells} == {(50, 0), (50, 100), (200, 0), (200, 100)}
    assert all(c.freeze_embeddings for c in cells)


def test_a_sweep_fixes_or_varies_the_optimiser_and_the_l1_pull(tmp_path, tiny_model_dir):
    """`run:` takes --optimizer and --l1-to-init as any run setting, and `vary` crosses them."""
    path = _sweep_file(tmp_path, tiny_model_dir, vary={"optimizer": ["adamw", "sgd"], "l1_to_init": [0.0, 1e-4]})
    sweep, where = load_sweep(str(path))
    cells = expand(sweep, Registry.discover(), where)
    assert {(c.optimizer, c.l1_to_init) for c in cells} == {("adamw", 0), ("adamw", 1e-4), ("sgd", 0), ("sgd", 1e-4)}
    with pytest.raises(ClgraftError, match="optimizer"):
        load_sweep(str(_sweep_file(tmp_path, tiny_model_dir, vary={"optimizer": ["adam"]})))


def test_the_leaderboard_says_how_many_cells_of_a_sweep_are_finished(tmp_path, tiny_model_dir, invoke):
    path = _sweep_file(tmp_path, tiny_model_dir, methods=["naive"], seeds=[1, 2])
    sweep, where = load_sweep(str(path))
    cells, results = expand(sweep, Registry.discover(), where), tmp_path / "res"
    write_manifest(results, sweep, cells)
    run_sweep(cells[:1], results, None, None, progress=False, echo=lambda s: None)  # as `--stream` runs a part
    assert sweep_progress(results) == ["sweep tiny v1: 1 of 2 cells finished (tiny/default: 1 of 2); in progress"]
    assert "**sweep tiny v1: 1 of 2 cells finished" in invoke("leaderboard", "--results", results)
    invoke("sweep", path, "--results", results, "--no-progress", "--stream", "tiny")
    assert "**sweep tiny v1: complete (2 cells).**" in invoke("leaderboard", "--results", results)


def test_cells_start_costliest_first():
    standard, path = load_sweep("standard")
    cells = expand(standard, Registry.discover(), path)
    order = [c.method for c in longest_first(cells)]
    cost = {c.method: METHODS[c.method].relative_cost for c in cells}
    costliest, cheapest = max(cost, key=cost.get), min(cost, key=cost.get)
    most, least = order.count(costliest), order.count(cheapest)
    assert order[:most] == [costliest] * most and order[-least:] == [cheapest] * least
    assert [cost[m] for m in order] == sorted((cost[m] for m in order), reverse=True)
    assert sorted(map(str, cells)) == sorted(map(str, longest_first(cells)))  # a reordering, nothing lost
    stream_seed = [(c.stream, c.seed) for c in longest_first(cells) if c.method == costliest]
    assert stream_seed == [(c.stream, c.seed) for c in cells if c.method == costliest]  # ties keep the grid order


def test_a_cell_is_done_only_when_a_record_has_its_exact_configuration(tmp_path, tiny_model_dir):
    """A finished `ewc_lambda=10` run does not finish the default `ewc` cell (whose options it merely contains)."""
    settings = {"stream": "tiny", "order": "default", "method": "ewc", "model": str(tiny_model_dir), "seed": 1}
    settings.update(steps=1, batch_size=4, max_length=32, max_test=10)
    tuned = RunConfig(**settings, method_options={"ewc_lambda": 10})
    write_json(tmp_path / "runs" / "tuned" / "run.json", {"config": tuned.model_dump(), "test_subset": TEST_SUBSET})
    said = []
    run_sweep([RunConfig(**settings), tuned], tmp_path, None, None, progress=False, echo=said.append)
    assert said[0].startswith("2 cells, 1 finished already; 1 to run")
    # without progress bars each finished cell says so, with its time and the counts
    assert any(line.startswith("cell ewc tiny/default seed 1: done (") and "finished: 2 of 2" in line for line in said)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": ["nope"]}, "unknown method 'nope'"),
        ({"grid": {"naive": {"engine": ["bad"]}}}, "grid.naive"),
        ({"seeds": []}, "key 'seeds'"),
        ({"vary": {"colour": [1]}}, "vary: colour not a run setting"),
        ({"vary": {"steps": [8, 0]}}, "steps"),
        ({"streams": [{"stream": "tiny", "seeds": []}]}, "seeds"),
        ({"colour": "red"}, "key 'colour'"),
        ({"streams": [{"stream": "tiny", "orders": ["sideways"]}]}, "no order 'sideways'"),
    ],
)
def test_bad_sweep_files_fail_in_one_line(tmp_path, tiny_model_dir, change, message, invoke):
    path = _sweep_file(tmp_path, tiny_model_dir, **change)
    with pytest.raises(ClgraftError, match=message):
        invoke("sweep", path, "--results", tmp_path / "r", "--no-progress")


def test_sweep_killed_with_sigkill_finishes_with_the_same_results(tmp_path, tiny_model_dir, invoke):
    path = _sweep_file(tmp_path, tiny_model_dir, methods=["naive"], seeds=[1, 2, 3])  # three cells
    whole = tmp_path / "whole"
    output = invoke("sweep", path, "--results", whole, "--no-progress")
    assert "3 to run" in output and "overhead" in output
    killed = tmp_path / "killed"
    command = _cli(path, killed)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*command, "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list(killed.glob("runs/*/run.json"))) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    while not list(killed.glob("runs/*/progress.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # killed inside a cell, after at least one finished
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(killed.glob("runs/*/run.json")))
    assert 1 <= done_before < 3
    output = invoke("sweep", path, "--results", killed, "--no-progress")
    assert f"{done_before} finished already" in output
    assert _results(killed) == _results(whole)


def test_workers_and_ray_give_the_results_of_one_process(tmp_path, tiny_model_dir, invoke):
    path = _sweep_file(tmp_path, tiny_model_dir, methods=["naive"])
    invoke("sweep", path, "--results", tmp_path / "one", "--no-progress")
    invoke("sweep", path, "--results", tmp_path / "two", "--workers", "2", "--no-progress")
    assert _results(tmp_path / "two") == _results(tmp_path / "one")
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        output = invoke("sweep", path, "--results", tmp_path / "ray", "--backend", "ray", "--workers", "2")
    finally:
        ray.shutdown()
    assert "2 to run on ray (2 worker(s) × 1 torch thread(s))" in output
    assert _results(tmp_path / "ray") == _results(tmp_path / "one")


def test_leaderboard_report_and_cite(tmp_path, tiny_model_dir, invoke):
    path = _sweep_file(tmp_path, tiny_model_dir)
    results = tmp_path / "res"
    invoke("sweep", path, "--results", results, "--no-progress")
    invoke("leaderboard", "--results", results, "--format", "csv", "--sort", "acc", "--out", tmp_path / "lb.csv")
    table = pd.read_csv(tmp_path / "lb.csv")
    assert set(table["n"]) == {2} and set(table["stream"]) == {"tiny"}
    means = [float(str(v).split(" ± ")[0]) for v in table["acc"]]
    assert means == sorted(means, reverse=True)
    markdown = invoke("leaderboard", "--results", results)
    assert "| stream" in markdown and "seeds 1, 2" in markdown and "R entries evaluated: all" in markdown
    runs = sorted((results / "runs").glob("*/run.json"))
    assert f"R of {len(runs)} of {len(runs)} runs recomputed" in markdown and "leaderboard v2" in markdown
    rows = json.loads(invoke("leaderboard", "--results", results, "--format", "json"))["rows"]
    assert {r["method"] for r in rows} == set(table["method"]) and all("acc_vs_naive" in r for r in rows)
    with pytest.raises(ClgraftError, match="--sort"):
        invoke("leaderboard", "--results", results, "--sort", "colour")
    written = invoke("report", "--results", results)
    assert "plots/tiny-default.png" in written
    run_dir = runs[0].parent
    written = invoke("report", run_dir)
    assert (run_dir / "report" / "R.png").stat().st_size > 0 and "accuracy-over-time.png" in written
    bib = invoke("cite", "--all", "--results", results)
    assert "@software{clgraft" in bib and "@inproceedings{panigrahi2023grafting" in bib
    assert "socher2013sst" in bib and "zhang2015charcnn" in bib  # the tiny tasks' data sets
    assert invoke("cite", "ties").startswith("@inproceedings{yadav2023ties")
    with pytest.raises(ClgraftError, match="no leaderboard row has the id '9'"):
        invoke("cite", "9", "--results", results)
    edited = json.loads(runs[0].read_text())
    edited["R"][-1][0] += 0.01  # an accuracy changed by hand
    runs[0].write_text(json.dumps(edited))
    with pytest.raises(ClgraftError, match="differs from the R of its predictions.npz"):
        invoke("leaderboard", "--results", results)


def _record(seed: int, acc: float, method: str = "naive", **run) -> dict:
    """A finished run on the tiny stream as run.json holds it (only what the leaderboard reads)."""
    from clgraft.methods import get_method, parse_options

    config = RunConfig(**{"stream": "tiny", "order": "default", "method": method, "seed": seed, "steps": 12, **run})
    return {
        "format": 1,
        "stream": {"name": "tiny", "version": 1, "order": "default"},
        "method": {"name": method, "options": parse_options(get_method(method), {}).model_dump()},
        "tasks": [{"name": "tiny-sst2", "version": 1, "citation": "socher2013sst", "sizes": {"train": 16}}],
        "config": config.model_dump(),
        "config_hash": f"{seed:02d}{len(run):02d}" + "0" * 12,
        "model": {"id": config.model, "sha256": "ab" * 32, "block_parameters": 10646784},
        "heads": {"mode": config.head, "sizes": {"tiny-sst2": 2}},
        "freeze_embeddings": False,
        "seed": seed,
        "wall_s": 1.0,
        "R": [[0.5], [acc]],
        "metrics": {m: acc for m in ("acc", "bwt", "forgetting", "fwt", "la")},
    }


def test_leaderboard_rows_pool_only_seeds_of_one_configuration():
    """A 50-step shared-head run is a row of its own, not a third seed of the 12-step rows; two records of one seed
    count once (with a warning)."""
    from clgraft.results.leaderboard import summarize

    records = [_record(1, 0.5), _record(2, 0.7), _record(1, 0.2, steps=50, head="shared")]
    table = summarize(records)
    assert table["n"].tolist() == [2, 1] and table["acc"].tolist() == ["60.00 ± 14.14 [-67.06, 187.06]", "20.00"]
    assert table["setting"].tolist() == ["head=task, steps=12", "head=shared, steps=50"]


def test_leaderboard_counts_distinct_seeds_and_warns_about_a_second_record(capsys):
    from clgraft.results.leaderboard import summarize

    again = _record(1, 0.9, trajectory=4)  # seed 1 once more, with checkpoints saved: the same numbers' configuration
    table = summarize([_record(1, 0.5), _record(2, 0.7), again])
    assert table["n"].tolist() == [2] and table["acc"].tolist() == ["60.00 ± 14.14 [-67.06, 187.06]"]
    warning = capsys.readouterr().err
    assert "seed 1" in warning and again["config_hash"] in warning and "counted once" in warning


def test_methods_are_paired_with_naive_in_their_own_setting_seed_by_seed():
    """ewc's acc_vs_naive is the paired difference over the seeds both have (restated with scipy's paired t-test);
    a 50-step row has no 12-step naive to pair with; replay says it keeps examples, naive that it does not."""
    from scipy import stats

    from clgraft.results.leaderboard import summarize

    naive = {1: 0.50, 2: 0.60, 3: 0.55}
    ewc = {1: 0.56, 2: 0.62, 3: 0.60, 4: 0.9}  # seed 4 has no naive twin
    records = [_record(s, a) for s, a in naive.items()] + [_record(s, a, method="ewc") for s, a in ewc.items()]
    records += [_record(1, 0.7, method="replay", steps=50)]
    table = summarize(records).set_index("method")
    diffs = [100 * (ewc[s] - naive[s]) for s in (1, 2, 3)]
    mean = sum(diffs) / 3
    low, high = stats.t.interval(0.95, 2, loc=mean, scale=stats.sem(diffs))
    p = stats.ttest_rel([ewc[s] for s in (1, 2, 3)], [naive[s] for s in (1, 2, 3)]).pvalue
    assert table.loc["ewc", "acc_vs_naive"] == f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] p={p:.3f} (n=3)"
    assert table.loc["naive", "acc_vs_naive"] == "-" and table.loc["replay", "acc_vs_naive"] == "-"
    assert table.loc["replay", "data_kept"] != "none" and table.loc["naive", "data_kept"] == "none"
    assert table.loc["replay", "steps_per_task"] == 50 and table.loc["ewc", "task_id_at_test"] == "yes"


def test_cite_takes_the_row_id_the_leaderboard_prints_whatever_the_sort(tmp_path, invoke):
    """The leaderboard sorted by ACC starts with replay; the id it prints for that row cites replay's paper, not
    the paper of the first row of the unsorted table (EWC)."""
    write_json(tmp_path / "runs" / "a" / "run.json", _record(1, 0.5, method="ewc"))
    write_json(tmp_path / "runs" / "b" / "run.json", _record(1, 0.7, method="replay"))
    invoke("leaderboard", "--results", tmp_path, "--format", "csv", "--sort", "acc", "--out", tmp_path / "lb.csv")
    best = pd.read_csv(tmp_path / "lb.csv", dtype=str).iloc[0]
    assert best["method"] == "replay" and best["id"] in invoke("leaderboard", "--results", tmp_path)
    bib = invoke("cite", best["id"], "--results", tmp_path)
    assert "@article{chaudhry2019tiny" in bib and "kirkpatrick2017ewc" not in bib
    with pytest.raises(ClgraftError, match="no leaderboard row has the id '1'"):
        invoke("cite", "1", "--results", tmp_path)


def test_a_rows_citations_include_the_streams_benchmark_paper():
    """MbPA++'s stream cites d'Autume et al. besides the method's and the data sets' papers; a record written before
    run.json carried the stream's key finds it in the registry."""
    from clgraft.results.leaderboard import citations

    record = {
        "stream": {"name": "mbpa-fewshot", "version": 1, "order": "i"},
        "method": {"name": "naive", "options": {"engine": "clgraft"}},
        "tasks": [{"name": "agnews-fs", "version": 1, "citation": "zhang2015charcnn"}],
    }
    keys = citations(record)
    assert keys[-3:] == ["dautume2019mbpa", "zhang2015charcnn", "clgraft"]
    record["stream"]["citation"] = "gao2021lmbff"
    assert "gao2021lmbff" in citations(record) and "dautume2019mbpa" not in citations(record)


def test_every_citation_key_has_an_entry():
    from clgraft.data.references import bib_entries
    from clgraft.methods import METHODS

    keys = {k for m in METHODS.values() for k in m.citations({"merge": "ties", "compose": "stitch"})}
    keys |= {m.citations({"merge": "dare"})[0] for m in [METHODS["merge"]]}
    registry = Registry.discover()
    keys |= {t.citation for t in [*registry.tasks.values(), *registry.streams.values()] if t.citation != "clgraft"}
    assert keys <= set(bib_entries())


def test_two_sweeps_on_one_results_folder_at_once(tmp_path, tiny_model_dir, invoke):
    """Cells are locked: the second sweep waits for a cell the first is running, then reuses it."""
    path = _sweep_file(tmp_path, tiny_model_dir, methods=["naive"])
    invoke("sweep", path, "--results", tmp_path / "alone", "--no-progress")
    shared = tmp_path / "shared"
    command = _cli(path, shared)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([*command, "--no-progress"], env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert _results(shared) == _results(tmp_path / "alone")
    assert not list(shared.glob("runs/*/.*.tmp"))  # no partial file left behind


def test_plan_prices_cells_from_measured_runs(tmp_path, invoke):
    """`sweep --plan` runs nothing; a cell costs the mean CPU time of finished runs of its configuration (any seed),
    else naive's at the same settings × the method's relative cost, else it is unknown."""
    from clgraft.sweeps.cost import plan

    for seed, cpu in ((1, 10.0), (2, 20.0)):
        record = {**_record(seed, 0.5), "wall_s": 99.0, "cpu_s": cpu}  # CPU seconds, where a record has them
        write_json(tmp_path / "res" / "runs" / f"naive-{seed}" / "run.json", record)
    settings = {"stream": "tiny", "order": "default", "steps": 12}
    cells = [RunConfig(**settings, method="naive", seed=s) for s in (1, 2, 3)]
    cells += [RunConfig(**settings, method="lwf", seed=1), RunConfig(**{**settings, "steps": 50}, seed=1)]
    table = plan(cells, tmp_path / "res", [])
    assert table["cells"].tolist() == [3, 1, 1] and table["finished"].tolist() == [2, 0, 0]
    assert table["settings"].tolist() == ["steps=12", "steps=12", "steps=50"]  # only what varies among the cells
    assert table["s_per_cell"].tolist()[:2] == [15.0, 15.0 * METHODS["lwf"].relative_cost]
    assert table["source"].tolist()[0] == "measured (2 runs)" and table["s_per_cell"].isna().tolist()[2]
    assert table["s_left"].tolist()[:2] == [15.0, 15.0 * METHODS["lwf"].relative_cost]
    output = invoke("sweep", "tiny", "--plan", "--results", tmp_path / "res", "--stream", "tiny")
    assert "4 of 4 cells left; 4 cells without an estimate" in output  # the tiny sweep's settings differ
    assert not (tmp_path / "res" / "sweeps").exists()  # a plan writes nothing
    with pytest.raises(ClgraftError, match="--stream lmbff-mixed: the sweep has no such stream"):
        invoke("sweep", "tiny", "--plan", "--stream", "lmbff-mixed")
    from clgraft.sweeps.cost import summary

    assert summary(table, cores=2) == (
        "3 of 5 cells left: ≈ 0.0 core-hours (≈ 0.0 h wall on 2 cores kept busy); 1 more cell without an estimate"
    )


def test_plan_carries_a_methods_measured_cost_ratio_to_naive_across_streams(tmp_path):
    """A cell with no run of its own but a naive twin is priced at naive's cost × the method's cost over naive's as
    measured on other streams at the same settings (not the rough relative cost); at other settings the rough one."""
    from clgraft.sweeps.cost import plan

    def write(name: str, method: str, stream: str, cpu: float, **run) -> None:
        record = _record(1, 0.5, method, **run)
        record["config"]["stream"] = stream
        write_json(tmp_path / "res" / "runs" / name / "run.json", {**record, "cpu_s": cpu})

    write("naive-a", "naive", "stream-a", 10.0)
    write("lwf-a", "lwf", "stream-a", 30.0)
    write("naive-b", "naive", "stream-b", 7.0)
    write("naive-b50", "naive", "stream-b", 40.0, steps=50)
    cells = [
        RunConfig(stream="stream-b", order="default", method="lwf", seed=1, steps=12),
        RunConfig(stream="stream-b", order="default", method="lwf", seed=1, steps=50),
    ]
    table = plan(cells, tmp_path / "res", [])
    assert table["s_per_cell"].tolist() == [pytest.approx(21.0), 40.0 * METHODS["lwf"].relative_cost]
    rough = f"naive's × {METHODS['lwf'].relative_cost:g} (relative cost)"
    assert table["source"].tolist() == ["naive's × 3 (measured on stream-a)", rough]


def test_plan_prices_a_memory_knobs_new_point_from_the_methods_other_points(tmp_path):
    """A replay cell at a memory size never run (a sweep varying per_class) costs what replay's measured cells on
    that stream cost at other sizes, its other options equal (not naive's × a ratio); on a stream where replay never
    ran, naive's × its relative cost as before."""
    from clgraft.sweeps.cost import plan

    def write(name: str, method: str, stream: str, cpu: float, **options) -> None:
        record = _record(1, 0.5, method)
        record["config"]["stream"] = stream
        record["method"]["options"].update(options)
        write_json(tmp_path / "res" / "runs" / name / "run.json", {**record, "cpu_s": cpu})

    write("naive-a", "naive", "stream-a", 10.0)
    write("replay-a", "replay", "stream-a", 30.0, per_class=2)
    write("replay-a4", "replay", "stream-a", 50.0, per_class=4)
    write("naive-b", "naive", "stream-b", 7.0)
    write("replay-a-big", "replay", "stream-a", 900.0, per_class=2, mem_batch_size=64)  # another variant: not pooled
    cells = [
        RunConfig(stream=s, order="default", method="replay", method_options={"per_class": n}, seed=1, steps=12)
        for s in ("stream-a", "stream-b")
        for n in (1, 8)
    ]
    table = plan(cells, tmp_path / "res", [])
    assert table["s_per_cell"].tolist()[:2] == [40.0, 40.0]
    assert table["source"].tolist()[0] == "other per_class measured (2 runs)"
    assert table["source"].tolist()[2] == f"naive's × {METHODS['replay'].relative_cost:g} (relative cost)"


def test_leaderboard_header_names_each_commit_and_says_when_a_record_has_none():
    """Records from a git checkout give their commit; one run from a plain copy of the source says it has none,
    not 'None'."""
    from clgraft.results.leaderboard import identification

    checked_out, copied = _record(1, 0.5), _record(2, 0.7)
    checked_out["versions"] = {"clgraft": "0.1.0", "git_commit": "0123456789abcdef" * 2}
    copied["versions"] = {"clgraft": "0.1.0", "git_commit": None}
    header = identification([checked_out, copied])
    assert "at commit 0123456789ab, unknown (not a git checkout);" in header and "None" not in header


def test_leaderboard_header_lists_seeds_in_numeric_order():
    from clgraft.results.leaderboard import header

    text = header([_record(seed, 0.5) for seed in (100, 13, 87, 21)])
    assert "seeds 13, 21, 87, 100;" in text


def test_leaderboard_header_hashes_every_data_file_of_a_task_whatever_the_records_order():
    """Two data seeds read two sets of files: the task's data hash covers both, in either order of the records."""
    from clgraft.results.leaderboard import identification

    one, other = _record(1, 0.5), _record(2, 0.7)
    one["tasks"][0]["checksums"] = {"sst2/16-13/test.tsv": "aa" * 32}
    other["tasks"][0]["checksums"] = {"sst2/16-21/test.tsv": "bb" * 32}
    assert identification([one, other]) == identification([other, one])
    assert identification([one, other]) != identification([one, one])


def test_a_fixed_methods_row_is_still_paired_with_naive():
    """A row of a method at a later code revision (TIES, revision 2) is compared with naive's runs, which carry no
    revision: the paired difference is there, and it is the mean of the seeds' ACC differences."""
    import glob
    import json

    from clgraft.results.leaderboard import summarize

    runs = Path(__file__).resolve().parent.parent / "results" / "runs"
    wanted = {("naive", 1), ("merge", 2)}
    records = [
        r
        for p in sorted(glob.glob(str(runs / "lmbff-mixed-forward-*-s1[3]-*" / "run.json")))
        + sorted(glob.glob(str(runs / "lmbff-mixed-forward-*-s2[1]-*" / "run.json")))
        for r in [json.loads(Path(p).read_text())]
        if (r["method"]["name"], r["method"].get("revision", 1)) in wanted
        and r["method"]["options"].get("merge", "ties") == "ties"
        and r["config"].get("optimizer") in (None, "adamw")  # the standard sweep's, not the recipe sweep's SGD naive
    ]
    assert {r["method"]["name"] for r in records} == {"naive", "merge"} and len(records) == 4
    table = summarize(records, warn=lambda s: None)
    ties = table[table["method"] == "merge"].iloc[0]
    by_seed = {r["seed"]: r["metrics"]["acc"] for r in records if r["method"]["name"] == "merge"}
    naive = {r["seed"]: r["metrics"]["acc"] for r in records if r["method"]["name"] == "naive"}
    expected = 100 * sum(by_seed[s] - naive[s] for s in (13, 21)) / 2
    assert ties["acc_vs_naive"].startswith(f"{expected:+.2f}")


def test_stream_and_method_select_the_cells_a_sweep_runs(tmp_path, invoke):
    """--stream and --method pick cells by stream, by method, and by an alias or options the cells' must include;
    a choice that selects nothing is one line naming what the sweep has."""
    from clgraft.sweeps.sweep import select_cells

    grid = {"graft-compose": {"sparsity": [0.01, 0.2]}}
    doc = {**yaml.safe_load(TINY.read_text()), "methods": ["naive", "graft-compose", "ties"], "grid": grid}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    sweep, where = load_sweep(str(path))
    cells = expand(sweep, Registry.discover(), where)
    picked = select_cells(cells, None, ["graft-compose"])
    assert len(picked) == 4 and {c.method for c in picked} == {"graft-compose"}
    picked = select_cells(cells, ["tiny"], ["graft-compose:sparsity=0.2", "naive"])
    assert sorted((c.method, c.method_options.get("sparsity"), c.seed) for c in picked) == [
        ("graft-compose", 0.2, 1),
        ("graft-compose", 0.2, 2),
        ("naive", None, 1),
        ("naive", None, 2),
    ]
    assert {c.method for c in select_cells(cells, None, ["ties"])} == {"merge"}  # an alias selects its method's cells
    assert len(select_cells(cells, None, ["graft-compose:localizer=scaled"])) == 4  # a default counts as set
    assert select_cells(cells, None, None) == cells
    with pytest.raises(ClgraftError, match=r"--method replay: no cell of the sweep \(naive, graft-compose, merge\)"):
        select_cells(cells, None, ["replay"])
    with pytest.raises(ClgraftError, match="--method graft-compose:sparsity=0.05: no cell"):
        select_cells(cells, None, ["graft-compose:sparsity=0.05"])
    output = invoke("sweep", str(path), "--plan", "--results", tmp_path / "res", "--method", "naive")
    assert "2 of 2 cells left" in output


def test_drop_weights_removes_a_finished_cells_weights_and_keeps_its_record(tmp_path, tiny_model_dir, invoke):
    """--drop-weights: each finished cell keeps run.json and loses weights/; by default the weights stay."""
    path = _sweep_file(tmp_path, tiny_model_dir, methods=["naive"], seeds=[1])
    for flag, kept in (("--drop-weights", False), ("--keep-weights", True)):
        results = tmp_path / flag.strip("-")
        invoke("sweep", path, "--results", results, "--no-progress", flag)
        (cell,) = (p.parent for p in (results / "runs").glob("*/run.json"))
        assert (cell / "run.json").is_file() and (cell / "weights").is_dir() is kept
