"""The Python API (clgraft.api) on the tiny stream, and the README's API example run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clgraft import api

README = Path(__file__).resolve().parent.parent / "README.md"


def test_run_localize_compose_agree_with_the_records(tiny_model_dir, tmp_path):
    result = api.run("tiny", model=str(tiny_model_dir), steps=3, batch_size=4, max_length=32, out=tmp_path / "r")
    assert list(result.R.columns) == ["tiny-sst2", "tiny-agnews", "tiny-trec"] and len(result.R) == 4
    assert result.R.iloc[3, 2] == pytest.approx(100 * result.record["R"][3][2])
    # one unit, accuracy points, for every accuracy the API returns (the record keeps run.json's fractions)
    assert result.metrics["acc"] == pytest.approx(result.R.iloc[3].mean())
    assert result.metrics == {
        k: None if v is None else pytest.approx(100 * v) for k, v in result.record["metrics"].items()
    }
    again = api.run("tiny", model=str(tiny_model_dir), steps=3, batch_size=4, max_length=32, out=tmp_path / "r")
    assert again.record == result.record  # a finished run is reused
    grafts = api.localize(result.run_dir, sparsity=0.05, steps=2, tasks=["tiny-trec"])
    assert list(grafts["task"]) == ["tiny-trec"] and (result.run_dir / grafts["graft"][0]).is_file()
    assert grafts["acc_finetuned"][0] == pytest.approx(result.R.iloc[3, 2])  # θ_t's accuracy, in points as R
    assert grafts["recovered"][0] == pytest.approx(grafts["acc_grafted"][0] / grafts["acc_finetuned"][0])
    composed = api.compose(result.run_dir, list(grafts["graft"]))
    assert composed.accuracy == {
        "tiny-trec": pytest.approx(grafts["acc_grafted"][0])
    }  # θ₀ + one graft: the grafted model


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path, monkeypatch):
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its API example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102 - the documented example, as written
    assert namespace["result"].metrics["acc"] is not None and namespace["composed"].accuracy
