"""Options of the BiRD embedding pipeline, shared by the API's callers, the CLI and config
files (TOML ``[bird]`` table or JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cellbridge._options import Options, _bad, _positive_int
from cellbridge.bird._controls import check_control_drug
from cellbridge.bird.embedding import DEFAULT_N_COMPONENTS
from cellbridge.bird.signatures import DEFAULT_ALPHA, DEFAULT_TOP_K
from cellbridge.errors import InputError

__all__ = ["BirdConfig"]


@dataclass(frozen=True)
class BirdConfig(Options):
    """Options of ``cellbridge bird signatures|embed`` (BiRD §2, Algorithm 1).

    Attributes
    ----------
    reference_lines
        The reference cell lines (BiRD: A549, AN3 CA, SK-MEL-2, SNU-1, A-172).
    method
        DE test: ``"wilcoxon"`` or ``"t-test"``.
    alpha
        q-value cut-off of a signature gene.
    top_k
        Signature size (top genes by ``|logFC|`` among the significant ones).
    n_components
        Embedding dimensions per reference line.
    by
        ``"line"``: hold one reference line's cells at a time; ``"plate"``: read one
        plate at a time from the file (backed), for screens where every (line, drug) is
        on one plate (Tahoe-100M).
    drug_key, control_key, plate_key, cell_line_key
        ``obs`` columns of the cells.
    control_drug
        Mark the controls by their drug instead of the ``control_key`` column (e.g.
        ``"DMSO_TF"`` for the Tahoe-100M plate files, which have no control column).
    """

    SECTION = "bird"

    reference_lines: tuple[str, ...] = field(default_factory=tuple)
    method: str = "wilcoxon"
    alpha: float = DEFAULT_ALPHA
    top_k: int = DEFAULT_TOP_K
    n_components: int = DEFAULT_N_COMPONENTS
    by: str = "line"
    drug_key: str = "drug"
    control_key: str = "control"
    plate_key: str = "plate"
    cell_line_key: str = "cell_line"
    control_drug: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference_lines", tuple(self.reference_lines))
        if not all(isinstance(x, str) and x for x in self.reference_lines):
            _bad("reference_lines", list(self.reference_lines), "must be cell-line names")
        if self.method not in ("wilcoxon", "t-test"):
            _bad("method", self.method, "must be 'wilcoxon' or 't-test'")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float):
            _bad("alpha", self.alpha, "must be a number in (0, 1]")
        if not 0 < self.alpha <= 1:
            raise InputError("alpha", "must be in (0, 1]", values=[self.alpha])
        _positive_int(self, "top_k", "n_components")
        if self.by not in ("line", "plate"):
            _bad("by", self.by, "must be 'line' or 'plate'")
        check_control_drug(self.control_drug)
