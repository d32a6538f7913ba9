"""``cellbridge run CONFIG.toml`` and ``cellbridge demo --write-config``: every command-line
option is a config key and every key an option; a config runs exactly the command lines
it stands for; a bad config stops before any step runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellbridge.cli.main import app
from cellbridge.cli.run import STEPS, _commands, _params, command_line
from cellbridge.data import pbmc_patients, perturbation_screen

runner = CliRunner()


def _template() -> str:
    result = runner.invoke(app, ["demo", "--write-config"])
    assert result.exit_code == 0, result.output
    return result.output


def _table_keys(text: str, step: str) -> set[str]:
    """Keys of one table of the template, set or shown commented out."""
    start = text.index(f"\n[{step}]\n")
    end = text.find("\n[", start + 1)
    body = text[start : end if end >= 0 else len(text)]
    return set(re.findall(r"^(?:# )?([a-z_]+) = ", body, flags=re.M))


def test_every_option_is_a_key_and_every_key_an_option() -> None:
    text = _template()
    parsed = tomllib.loads(text)  # valid TOML as printed
    commands = _commands()
    assert set(commands) - set(STEPS) == {"demo", "run"}, "a command is missing from the run"
    assert parsed["run"]["steps"] == list(STEPS)
    for step in STEPS:
        options = set(_params(commands[step]))
        assert _table_keys(text, step) == options, step
        group, _, name = step.partition(".")
        table = parsed[group][name] if name else parsed[group]
        assert set(table) <= options
        command_line(step, table)  # every printed value converts back to the option


def test_the_printed_defaults_are_the_commands_defaults() -> None:
    parsed = tomllib.loads(_template())
    commands = _commands()
    for step in STEPS:
        group, _, name = step.partition(".")
        table = parsed[group][name] if name else parsed[group]
        for key, value in table.items():
            param = _params(commands[step])[key]
            if not param.required and param.default is not None:
                default = param.default
                assert value == (str(default) if isinstance(default, Path) else default), (
                    step,
                    key,
                )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run-inputs")
    data = pbmc_patients(n_patients=12, cells_per_patient=30, seed=0)
    data.cells.write_h5ad(root / "cells.h5ad")
    data.pseudobulk.write_h5ad(root / "bulk.h5ad")
    screen, _ = perturbation_screen(n_drugs=10, n_cell_lines=3, cells_per_condition=30, seed=5)
    screen.write_h5ad(root / "screen.h5ad")
    return root


CONFIG = """
[run]
steps = ["similarity", "bird.signatures", "bird.embed"]

[similarity]
input = "{inputs}/cells.h5ad"
output = "out/similarity.h5ad"
k = 5
n_jobs = 1

[bird.signatures]
cells = "{inputs}/screen.h5ad"
output = "out/signatures.parquet"
reference_lines = ["line0", "line1"]
top_k = 20
progress = false

[bird.embed]
signatures_file = "out/signatures.parquet"
output = "out/embedding.parquet"
reference_lines = "line0,line1"
n_components = 4
"""


def test_a_config_runs_the_command_lines_it_stands_for(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same outputs as typing the commands; relative paths from the config's folder
    (the run starts elsewhere)."""
    folder = tmp_path / "project"
    (folder / "out").mkdir(parents=True)
    config = folder / "run.toml"
    config.write_text(CONFIG.format(inputs=inputs))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output

    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    lines = "--reference-lines line0,line1"
    for words in (
        f"similarity {inputs}/cells.h5ad -o {by_hand}/similarity.h5ad --k 5 --n-jobs 1",
        f"bird signatures {inputs}/screen.h5ad -o {by_hand}/sig.parquet {lines} --top-k 20 "
        "--no-progress",
        f"bird embed {by_hand}/sig.parquet -o {by_hand}/emb.parquet {lines} --n-components 4",
    ):
        done = runner.invoke(app, words.split())
        assert done.exit_code == 0, done.output
    ours = anndata.read_h5ad(folder / "out" / "similarity.h5ad")
    theirs = anndata.read_h5ad(by_hand / "similarity.h5ad")
    np.testing.assert_array_equal(np.asarray(ours.X), np.asarray(theirs.X))
    assert list(ours.obs_names) == list(theirs.obs_names)
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / "out" / "signatures.parquet"),
        pd.read_parquet(by_hand / "sig.parquet"),
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / "out" / "embedding.parquet"),
        pd.read_parquet(by_hand / "emb.parquet"),
    )


def test_dry_run_prints_one_command_line_per_step_and_writes_nothing(
    inputs: Path, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.format(inputs=inputs))
    result = runner.invoke(app, ["run", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["similarity", "bird", "bird"]
    assert "--reference-lines line0,line1" in lines[1]  # a TOML list: comma-separated
    assert "--no-progress" in lines[1]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[bird.embed]", "[bird.embedding]"), "unknown steps"),
        (("k = 5", "k = 5\nneighbours = 3"), "unknown keys"),
        (("k = 5", 'k = "many"'), "'k'"),
        (('input = "{inputs}/cells.h5ad"\n', ""), "input"),
        (("progress = false", 'progress = "no"'), "true or false"),
        (("[run]", "[run"), "not valid TOML"),
        (('steps = ["similarity", ', 'steps = ["poppy.train", "similarity", '), "no table"),
    ],
)
def test_a_bad_config_stops_before_any_step(
    inputs: Path, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    (tmp_path / "out").mkdir()
    text = CONFIG.replace(*edit)
    config = tmp_path / "run.toml"
    config.write_text(text.format(inputs=inputs))
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert list((tmp_path / "out").iterdir()) == []  # not even the first step ran


PIPELINE = """
[similarity]
input = "{inputs}/cells.h5ad"
output = "similarity.h5ad"
k = 5
n_jobs = 1

[poppy.train]
cells = "{inputs}/cells.h5ad"
bulk = "{inputs}/bulk.h5ad"
similarity = "similarity.h5ad"
output = "poppy_model"
cell_key = "X_pca"
max_epochs = 2
batch_size = 4
progress = false

[poppy.embed]
model = "poppy_model"
bulk = "{inputs}/bulk.h5ad"
output = "bulk_embedded.h5ad"

[bird.signatures]
cells = "{inputs}/screen.h5ad"
output = "signatures.parquet"
reference_lines = "line0,line1"
top_k = 20
progress = false

[bird.embed]
signatures_file = "signatures.parquet"
output = "embedding.parquet"
reference_lines = "line0,line1"
n_components = 4

[bird.knn-eval]
cells = "{inputs}/screen.h5ad"
output = "knn"
embedding = ["bird=embedding.parquet"]
reference_lines = "line0,line1"
evaluation_lines = "line2"
random_dim = 4
k = 3
"""


def test_two_runs_with_one_seed_give_identical_numbers(inputs: Path, tmp_path: Path) -> None:
    """The whole pipeline twice, from one config: every table, matrix and embedding of
    the two output folders is identical (training included)."""
    import warnings

    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        (folder / "run.toml").write_text(PIPELINE.format(inputs=inputs))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="fewer than B - 2 samples")
            result = runner.invoke(app, ["run", str(folder / "run.toml")])
        assert result.exit_code == 0, result.output
    a, b = folders
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    compared = 0
    for name in files:
        if name.suffix == ".h5ad":
            x, y = anndata.read_h5ad(a / name), anndata.read_h5ad(b / name)
            np.testing.assert_array_equal(np.asarray(x.X), np.asarray(y.X))
            for key in x.obsm:
                np.testing.assert_array_equal(x.obsm[key], y.obsm[key])
        elif name.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name))
        elif name.suffix in {".csv", ".safetensors"}:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
        else:
            continue
        compared += 1
    assert compared >= 8, files
