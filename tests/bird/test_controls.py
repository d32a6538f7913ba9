"""Controls marked by their drug (``control_drug``, e.g. Tahoe's ``"DMSO_TF"``) instead of
a boolean column: every BiRD step gives exactly what it gives with the column, and a
``control_drug`` that no cell has, or a bad flag column, is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellbridge.bird import (
    AlignConfig,
    BirdConfig,
    Signatures,
    differential_response,
    drug_profiles,
    signatures_from_plates,
)
from cellbridge.bird._controls import control_flags
from cellbridge.bird.align import treated_cells
from cellbridge.cli.main import app
from cellbridge.data import perturbation_screen
from cellbridge.errors import InputError

REFERENCE = ["line0", "line1"]
VEHICLE = "DMSO"  # the simulated screen's control drug


@pytest.fixture(scope="module")
def screen() -> AnnData:
    adata, _ = perturbation_screen(n_drugs=6, n_cell_lines=3, cells_per_condition=40, seed=3)
    adata.obsm["X_pca"] = np.random.default_rng(0).normal(size=(adata.n_obs, 4))
    return adata


@pytest.fixture(scope="module")
def unflagged(screen: AnnData) -> AnnData:
    """The screen as Tahoe ships it: no control column, controls named by their drug."""
    adata = screen.copy()
    del adata.obs["control"]
    return adata


def _same_signatures(got: Signatures, expected: Signatures) -> None:
    assert got.genes == expected.genes
    pd.testing.assert_frame_equal(got.table, expected.table, check_exact=True)
    pd.testing.assert_frame_equal(got.n_significant, expected.n_significant, check_exact=True)
    assert got.params["control_drug"] == VEHICLE
    assert expected.params["control_drug"] is None


def test_the_screen_marks_its_controls_by_drug_and_flag(screen: AnnData) -> None:
    # the premise of the equalities below
    assert ((screen.obs["drug"] == VEHICLE) == screen.obs["control"]).all()
    assert screen.obs["control"].any() and not screen.obs["control"].all()


def test_differential_response_by_control_drug(screen: AnnData, unflagged: AnnData) -> None:
    expected = differential_response(screen, reference_lines=REFERENCE)
    got = differential_response(unflagged, reference_lines=REFERENCE, control_drug=VEHICLE)
    _same_signatures(got, expected)
    # the control column, when present, is not read
    decoy = screen.copy()
    decoy.obs["control"] = ~decoy.obs["control"]
    again = differential_response(decoy, reference_lines=REFERENCE, control_drug=VEHICLE)
    _same_signatures(again, expected)


def test_plate_files_by_control_drug(screen: AnnData, tmp_path: Path) -> None:
    # Tahoe's design: every drug on one plate, the controls of every line on every plate
    drugs = sorted(set(screen.obs.loc[~screen.obs["control"], "drug"]))
    home = {d: f"plate{i % 2}" for i, d in enumerate(drugs)}
    keep = screen.obs["control"] | (screen.obs["plate"] == screen.obs["drug"].map(home))
    tahoe = screen[keep.to_numpy()].copy()
    files = []
    for plate in sorted(set(tahoe.obs["plate"])):
        part = tahoe[(tahoe.obs["plate"] == plate).to_numpy()].copy()
        part.obs = part.obs[["drug", "cell_line", "plate"]].astype(str)  # no control column
        del part.obsm["X_pca"]
        part.uns = {}
        files.append(tmp_path / f"{plate}.h5ad")
        part.write_h5ad(files[-1])
    assert len(files) == 2
    expected = differential_response(tahoe, reference_lines=REFERENCE)
    got = signatures_from_plates(files, reference_lines=REFERENCE, control_drug=VEHICLE)
    _same_signatures(got, expected)
    with pytest.raises(InputError, match="control_drug") as info:
        signatures_from_plates(files, reference_lines=REFERENCE, control_drug="DMSO_TF")
    assert drugs[0] in str(info.value)  # the fix lists drugs that do exist
    with pytest.raises(InputError, match=r"has no column.*control"):
        signatures_from_plates(files, reference_lines=REFERENCE)


def test_drug_profiles_and_the_aligner_leave_the_same_cells_out(
    screen: AnnData, unflagged: AnnData
) -> None:
    expected = drug_profiles(screen)
    got = drug_profiles(unflagged, control_drug=VEHICLE)
    assert got.keys() == expected.keys()
    for line in expected:
        pd.testing.assert_frame_equal(got[line], expected[line], check_exact=True)
        assert VEHICLE not in got[line].index
    flagged = treated_cells(screen, AlignConfig())
    named = treated_cells(unflagged, AlignConfig(control_drug=VEHICLE))
    assert named.obs_names.equals(flagged.obs_names)
    np.testing.assert_array_equal(named.drug, flagged.drug)
    assert VEHICLE not in set(named.drug)


def test_a_control_drug_no_cell_has_is_refused_everywhere(
    screen: AnnData, unflagged: AnnData
) -> None:
    calls = [
        lambda: differential_response(unflagged, reference_lines=REFERENCE, control_drug="dmso"),
        lambda: drug_profiles(unflagged, control_drug="dmso"),
        lambda: treated_cells(unflagged, AlignConfig(control_drug="dmso")),
    ]
    for call in calls:
        with pytest.raises(InputError, match=r"no cell has obs\['drug'\] == 'dmso'") as info:
            call()
        assert info.value.field == "control_drug"
        assert "DMSO" in str(info.value)  # listed among the drugs that exist


@pytest.mark.parametrize("bad", ["", 3, ["DMSO"]])
def test_a_control_drug_that_is_no_name_is_refused(bad: object, screen: AnnData) -> None:
    with pytest.raises(InputError, match="control_drug"):
        BirdConfig(control_drug=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="control_drug"):
        AlignConfig(control_drug=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="control_drug"):
        differential_response(screen, reference_lines=REFERENCE, control_drug=bad)  # type: ignore[arg-type]


def test_bad_flag_columns_are_refused_with_the_alternative(screen: AnnData) -> None:
    obs = screen.obs.copy()
    obs["control"] = obs["control"].map({True: "yes", False: "no"})
    with pytest.raises(InputError, match="must be boolean") as info:
        control_flags(obs, drug_key="drug", control_key="control", control_drug=None)
    assert "control_drug" in str(info.value)
    obs["control"] = pd.array([True, None] * (len(obs) // 2), dtype="boolean")
    with pytest.raises(InputError, match="missing values"):
        control_flags(obs, drug_key="drug", control_key="control", control_drug=None)
    with pytest.raises(InputError, match="has no column 'flag'"):
        control_flags(obs, drug_key="drug", control_key="flag", control_drug=None)
    none = control_flags(obs, drug_key="drug", control_key=None, control_drug=None)
    assert none.dtype == bool and not none.any()


@settings(max_examples=50, deadline=None)
@given(
    drugs=st.lists(st.sampled_from(["DMSO_TF", "a", "b", None]), min_size=1, max_size=30),
    categorical=st.booleans(),
)
def test_control_flags_by_drug_are_the_drug_equality(
    drugs: list[str | None], categorical: bool
) -> None:
    column = pd.Series(drugs, dtype="category" if categorical else object)
    obs = pd.DataFrame({"drug": column})
    expected = np.array([d == "DMSO_TF" for d in drugs])
    if not expected.any():
        with pytest.raises(InputError, match="control_drug"):
            control_flags(obs, drug_key="drug", control_key="control", control_drug="DMSO_TF")
        return
    got = control_flags(obs, drug_key="drug", control_key="control", control_drug="DMSO_TF")
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def files(
    screen: AnnData, unflagged: AnnData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The screen as .h5ad files, with the control column and without it."""
    folder = tmp_path_factory.mktemp("screens")
    paths = folder / "flagged.h5ad", folder / "unflagged.h5ad"
    for adata, path in zip((screen, unflagged), paths, strict=True):
        copy = adata.copy()
        del copy.obsm["X_pca"]
        copy.write_h5ad(path)
    return paths


def test_cli_signatures_with_control_drug(files: tuple[Path, Path], tmp_path: Path) -> None:
    flagged_file, unflagged_file = files
    runner = CliRunner()
    common = ["--reference-lines", ",".join(REFERENCE), "--no-progress"]
    a = runner.invoke(
        app, ["bird", "signatures", str(flagged_file), "-o", str(tmp_path / "a.parquet"), *common]
    )
    assert a.exit_code == 0, a.output
    b = runner.invoke(
        app,
        [
            "bird",
            "signatures",
            str(unflagged_file),
            "-o",
            str(tmp_path / "b.parquet"),
            "--control-drug",
            VEHICLE,
            *common,
        ],
    )
    assert b.exit_code == 0, b.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "b.parquet"), pd.read_parquet(tmp_path / "a.parquet")
    )
    c = runner.invoke(
        app,
        ["bird", "signatures", str(unflagged_file), "-o", str(tmp_path / "c.parquet"), *common],
    )
    assert c.exit_code != 0
    assert "control" in c.output and "Traceback" not in c.output
    assert not (tmp_path / "c.parquet").exists()


def test_cli_knn_eval_reads_control_drug_from_the_config(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    flagged_file, unflagged_file = files
    config = tmp_path / "bird.toml"
    config.write_text(f'[bird]\ncontrol_drug = "{VEHICLE}"\n')
    runner = CliRunner()
    common = ["--random-dim", "4", "--k", "2", "--reference-lines", ",".join(REFERENCE)]
    a = runner.invoke(
        app, ["bird", "knn-eval", str(flagged_file), "-o", str(tmp_path / "a"), *common]
    )
    assert a.exit_code == 0, a.output
    b = runner.invoke(
        app,
        [
            "bird",
            "knn-eval",
            str(unflagged_file),
            "-o",
            str(tmp_path / "b"),
            "--config",
            str(config),
            *common,
        ],
    )
    assert b.exit_code == 0, b.output
    expected = pd.read_csv(tmp_path / "a" / "knn_mae.csv")
    got = pd.read_csv(tmp_path / "b" / "knn_mae.csv")
    pd.testing.assert_frame_equal(got, expected)
    assert VEHICLE not in set(got["drug"])
    c = runner.invoke(
        app, ["bird", "knn-eval", str(unflagged_file), "-o", str(tmp_path / "c"), *common]
    )
    assert c.exit_code != 0 and "control" in c.output
