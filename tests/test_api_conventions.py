"""The API conventions of DESIGN.md ("Conventions users rely on"), enforced over every public
object (every name in a subpackage's ``__all__``), the way scanpy's suite checks its API.

One test id per public object and rule, so a failure names the function:

(a) ``signature``: a callable that takes an AnnData takes it first; every parameter with a
    default (an option) is keyword-only — ``f(adata, *, sample_key="sample", ...)``. The
    leading positional parameters are the data (AnnData, arrays, tables, a fitted model) and
    have no default. Checked on functions, the constructors of non-dataclass classes and the
    public methods of public classes. Two rules, not exceptions: a fitted method model
    (``POPPY``, ``Aligner`` or a dict of them) may precede the AnnData, as the subject of an
    evaluation (``evaluate_alignment(model, bulk)`` reads as ``model.evaluate(bulk)``); and a
    ``config: XConfig | None = None`` parameter is data, not an option (``POPPY(config)``).
    ``nn.Module.forward`` is exempt from the keyword-only rule: ``module(x, mask)`` passes its
    inputs positionally.
(b) ``obs_keys``: parameters (and config fields) named ``*_key`` name a column or slot, so
    they are typed ``str`` and default to a string (or ``None`` where the slot is optional);
    the six standard obs keys default to exactly DESIGN.md's names.
(c) ``docstring``: every public function and class has a numpydoc docstring whose
    ``Parameters`` section documents each parameter of its signature and nothing else (a
    dataclass or NamedTuple record documents its fields as Parameters or Attributes). Public
    methods and properties have a docstring; where a method has a ``Parameters`` section, it
    too documents exactly the signature's parameters.
(d) ``config``: every ``*Config`` dataclass is frozen and documents each field.

Deliberate exceptions live in the allow-lists below, each with its reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

#: The public API: every subpackage (and the top-level ``report`` module) with an ``__all__``.
SUBPACKAGES = (
    "ontology",
    "ot",
    "data",
    "encoders",
    "nn",
    "poppy",
    "bird",
    "metrics",
    "plotting",
    "report",
    "distributed",
)
#: Modules of ``cellbridge`` that are deliberately not part of the walked API.
NOT_WALKED = {
    "cli": "the typer app; its commands are checked by tests/cli, not Python API",
    "errors": "exception classes, re-exported by the top-level package",
}

#: DESIGN.md: "Default obs keys: sample, cohort, cell_type, drug, cell_line, plate".
STANDARD_OBS_KEYS = {
    "sample_key": "sample",
    "cohort_key": "cohort",
    "cell_type_key": "cell_type",
    "drug_key": "drug",
    "cell_line_key": "cell_line",
    "plate_key": "plate",
}

# --- allow-lists: "qualified name" -> why ---------------------------------------------------

#: (a) callables whose first parameter is not the AnnData they take.
ANNDATA_NOT_FIRST: dict[str, str] = {
    # The drug embeddings under evaluation come first, like a model (the rule above); the
    # second argument is the AnnData *or* the precomputed profiles it would be reduced to.
    "bird.knn_evaluation": "the embeddings evaluated first; AnnData or profiles second",
}

#: (a) parameters with a default that may be passed positionally: "qualname.param" -> why.
POSITIONAL_OPTIONS: dict[str, str] = {
    # scipy's cdist / sklearn's pairwise_distances(X, Y=None) idiom: Y is the optional
    # second data matrix, not an option.
    "ot.pairwise_graph_emd.Y": "optional second data matrix, pairwise_distances(X, Y=None)",
    # The version names what is loaded, as read_ontology's path does;
    # load_cell_ontology("v2025-07-30") is the documented call (docs/ontology.md, the CLI).
    "ontology.load_cell_ontology.version": "names the ontology release that is loaded",
}

#: (b) obs-key parameters whose default differs from the standard: "qualname.param" -> why.
OBS_KEY_DEFAULTS: dict[str, str] = {
    # Readers name optional columns of a file: None = not required. A default would refuse
    # every file without that column; read_cells copies a named one to the standard name.
    "data.read_cells.cell_type_key": "optional column of the file read (None: not needed)",
    "data.read_cells.cohort_key": "optional column of the file read (None: not needed)",
    # Storing cell types is optional (None: the store holds embeddings only).
    "data.CellStore.from_anndata.cell_type_key": "optional: None stores no cell types",
    # A column of the Tahoe-100M parquet schema (cell_line_id), not a cellbridge obs key.
    "data.read_tahoe_parquet.cell_line_key": "the Tahoe-100M parquet column is cell_line_id",
}

#: (a) the fitted method models: one of these (or a dict of them) may come before the AnnData.
MODEL_TYPES = ("POPPY", "Aligner")


# --- collection -----------------------------------------------------------------------------


def _public_objects() -> list[tuple[str, Any]]:
    """``("subpackage.name", object)`` for every callable in every walked ``__all__``."""
    found = []
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"cellbridge.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.append((f"{sub}.{name}", obj))
    return found


PUBLIC = _public_objects()
IDS = [qualname for qualname, _ in PUBLIC]
CONFIGS = [
    (qualname, obj)
    for qualname, obj in PUBLIC
    if inspect.isclass(obj) and obj.__name__.endswith("Config")
]


def _is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "cellbridge"


def _members(cls: type) -> Iterator[tuple[str, Callable[..., Any], bool]]:
    """``(name, function, is_property)`` for the public methods and properties of ``cls``
    and of its cellbridge base classes (not torch's, lightning's or ``object``'s)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _is_ours(klass):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(attr, property) and attr.fget is not None:
                yield name, attr.fget, True
            elif isinstance(attr, staticmethod | classmethod) or inspect.isfunction(attr):
                yield name, getattr(cls, name), False


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    """The signature as callers see it: without ``self`` (a plain function taken from the
    class) or ``cls`` (a classmethod, already bound)."""
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        sig = sig.replace(parameters=params[1:])
    return sig


def _constructor(cls: type) -> inspect.Signature | None:
    """The constructor signature, or None where the class is not built by users
    (a Protocol)."""
    if getattr(cls, "_is_protocol", False):
        return None
    return inspect.signature(cls)


def _callables(qualname: str, obj: Any) -> Iterator[tuple[str, inspect.Signature, Any]]:
    """``(name, signature without self/cls, function)`` of the object: a function itself;
    for a class its constructor (when not a dataclass record) and its public methods."""
    if inspect.isfunction(obj):
        yield qualname, inspect.signature(obj), obj
        return
    sig = _constructor(obj)
    if sig is not None and not dataclasses.is_dataclass(obj) and not _is_namedtuple(obj):
        yield qualname, sig, obj.__init__
    for name, func, is_property in _members(obj):
        if not is_property:
            yield f"{qualname}.{name}", _signature(func), func


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


# --- AnnData detection -------------------------------------------------------------------------


def _hints(func: Any) -> dict[str, Any]:
    target = func.__init__ if inspect.isclass(func) else func
    try:
        return typing.get_type_hints(target, globalns=getattr(target, "__globals__", None))
    except Exception:  # an annotation names something only imported under TYPE_CHECKING
        return {}


def _union_members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _split_top_level(text: str) -> list[str]:
    """``"A | B[C | D]"`` -> ``["A", "B[C | D]"]``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _takes_anndata(param: inspect.Parameter, hints: dict[str, Any]) -> bool:
    """The parameter accepts an AnnData itself (alone or in a union; not a container of them)."""
    if param.name in hints:
        return any(member is anndata.AnnData for member in _union_members(hints[param.name]))
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        return False
    if not isinstance(annotation, str):
        return any(member is anndata.AnnData for member in _union_members(annotation))
    return any(part.split(".")[-1] == "AnnData" for part in _split_top_level(annotation))


def _is_model_param(param: inspect.Parameter, hints: dict[str, Any]) -> bool:
    """A fitted method model (or a dict of them): the subject of an evaluation."""
    if param.name in hints:
        hint = hints[param.name]
        inner = typing.get_args(hint)[-1:] if typing.get_origin(hint) is dict else ()
        return any(getattr(h, "__name__", None) in MODEL_TYPES for h in (hint, *inner))
    text = _annotation_text(param)
    return any(re.search(rf"\b{name}\b", text) for name in MODEL_TYPES)


def _is_config_param(param: inspect.Parameter, hints: dict[str, Any]) -> bool:
    """A ``config: XConfig | None = None`` parameter: the method's options object is data
    (``POPPY(POPPYConfig(...))``, ``fit_per_line(cells, E, config)``), not an option."""
    if param.name != "config":
        return False
    if param.name in hints:
        return any(
            inspect.isclass(member) and member.__name__.endswith("Config")
            for member in _union_members(hints[param.name])
        )
    return "Config" in str(param.annotation)


# --- (a) signature ----------------------------------------------------------------------------

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _signature_problems(qualname: str, obj: Any) -> list[str]:
    problems = []
    for name, sig, func in _callables(qualname, obj):
        is_forward = name.endswith(".forward") and issubclass(obj, torch.nn.Module)
        hints = _hints(func)
        params = list(sig.parameters.values())
        anndata_params = [p.name for p in params if _takes_anndata(p, hints)]
        if (
            anndata_params
            and params[0].name not in anndata_params
            and name not in ANNDATA_NOT_FIRST
            and not _is_model_param(params[0], hints)
        ):
            problems.append(
                f"{name}: takes an AnnData ({', '.join(anndata_params)}) but its first "
                f"parameter is {params[0].name!r}"
            )
        if is_forward:
            # nn.Module.__call__ passes forward's inputs positionally: module(x, mask).
            continue
        for param in params:
            if param.kind not in _POSITIONAL or param.default is inspect.Parameter.empty:
                continue
            if _is_config_param(param, hints) or f"{name}.{param.name}" in POSITIONAL_OPTIONS:
                continue
            problems.append(
                f"{name}: option {param.name!r} has a default but is not keyword-only "
                "(put it after `*`)"
            )
    return problems


@pytest.mark.parametrize(("qualname", "obj"), PUBLIC, ids=IDS)
def test_signature(qualname: str, obj: Any) -> None:
    """(a) AnnData first; options keyword-only."""
    problems = _signature_problems(qualname, obj)
    assert not problems, "\n".join(problems)


# --- (b) obs keys -----------------------------------------------------------------------------


def _key_params(qualname: str, obj: Any) -> Iterator[tuple[str, inspect.Parameter, Any]]:
    """Every ``*_key`` parameter of the object's callables, and of a dataclass's fields."""
    if inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or _is_namedtuple(obj)):
        sig = inspect.signature(obj)
        for param in sig.parameters.values():
            if param.name.endswith("_key"):
                yield qualname, param, obj
    for name, sig, func in _callables(qualname, obj):
        for param in sig.parameters.values():
            if param.name.endswith("_key"):
                yield name, param, func


def _annotation_text(param: inspect.Parameter) -> str:
    annotation = param.annotation
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _obs_key_problems(qualname: str, obj: Any) -> list[str]:
    problems = []
    for name, param, _ in _key_params(qualname, obj):
        where = f"{name}.{param.name}"
        if where in OBS_KEY_DEFAULTS:
            continue
        members = _split_top_level(_annotation_text(param))
        if "str" not in members:
            problems.append(f"{where}: a key is typed `str`, not {_annotation_text(param)!r}")
        default = param.default
        if param.name in STANDARD_OBS_KEYS:
            expected = STANDARD_OBS_KEYS[param.name]
            if default != expected:
                shown = "no default" if default is inspect.Parameter.empty else repr(default)
                problems.append(f"{where}: default must be {expected!r} (DESIGN.md), got {shown}")
        elif default is None:
            if "None" not in members:
                problems.append(f"{where}: default None but the annotation does not allow it")
        elif default is not inspect.Parameter.empty and not isinstance(default, str):
            problems.append(f"{where}: default must be a string, got {default!r}")
    return problems


@pytest.mark.parametrize(("qualname", "obj"), PUBLIC, ids=IDS)
def test_obs_keys(qualname: str, obj: Any) -> None:
    """(b) ``*_key`` parameters default to strings; the standard obs keys to DESIGN.md's."""
    problems = _obs_key_problems(qualname, obj)
    assert not problems, "\n".join(problems)


# --- (c) docstrings ---------------------------------------------------------------------------

#: numpydoc sections that document parameters.
PARAMETER_SECTIONS = ("Parameters", "Other Parameters")
_SECTION_RULE = re.compile(r"^\s*-{3,}\s*$")
_ENTRY = re.compile(r"^(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?$")


def _docstring(obj: Any) -> str:
    """The object's own docstring (``inspect.getdoc`` would inherit a base class's)."""
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


def _sections(doc: str) -> dict[str, list[str]]:
    """numpydoc sections: title -> its lines (dedented; the summary under "")."""
    lines = doc.splitlines()
    sections: dict[str, list[str]] = {"": []}
    current = ""
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and lines[i].strip() and _SECTION_RULE.match(lines[i + 1]):
            current = lines[i].strip()
            sections[current] = []
            i += 2
            continue
        sections[current].append(lines[i])
        i += 1
    return sections


def _documented(doc: str, *titles: str) -> list[str]:
    """The names documented in the given sections (``a, b : int`` documents ``a`` and
    ``b``; ``**options`` documents ``options``), in order."""
    names = []
    for title in titles:
        for line in _sections(doc).get(title, []):
            if not line.strip() or line[0].isspace():
                continue
            match = _ENTRY.match(line.strip())
            if match:
                names += [name.strip().lstrip("*") for name in match.group(1).split(",")]
    return names


def _check_parameters(name: str, doc: str, params: list[str], *titles: str) -> list[str]:
    if not doc:
        return [f"{name}: no docstring"]
    if not params:
        return []
    documented = _documented(doc, *titles)
    if not documented and not any(title in _sections(doc) for title in titles):
        return [f"{name}: no {' / '.join(titles)} section (documents none of {params})"]
    problems = []
    missing = [p for p in params if p not in documented]
    extra = [p for p in documented if p not in params]
    if missing:
        problems.append(f"{name}: parameters not documented: {missing}")
    if extra:
        problems.append(f"{name}: documents parameters that do not exist: {extra}")
    return problems


def _param_names(sig: inspect.Signature) -> list[str]:
    return list(sig.parameters)


def _docstring_problems(qualname: str, obj: Any) -> list[str]:
    if inspect.isfunction(obj):
        sig = inspect.signature(obj)
        return _check_parameters(qualname, _docstring(obj), _param_names(sig), *PARAMETER_SECTIONS)
    problems = []
    doc = _docstring(obj)
    sig = _constructor(obj)
    if not doc:
        problems.append(f"{qualname}: no docstring")
    elif sig is not None and (dataclasses.is_dataclass(obj) or _is_namedtuple(obj)):
        # A record: its fields are documented as Parameters or Attributes.
        fields = _param_names(sig)
        documented = _documented(doc, *PARAMETER_SECTIONS, "Attributes")
        missing = [f for f in fields if f not in documented]
        extra = [d for d in documented if d not in fields and not hasattr(obj, d)]
        if missing:
            problems.append(f"{qualname}: fields not documented: {missing}")
        if extra:
            problems.append(f"{qualname}: documents attributes that do not exist: {extra}")
    elif sig is not None:
        init_doc = _docstring(obj.__init__) if "__init__" in vars(obj) else ""
        # numpydoc: constructor parameters go in the class docstring or in __init__'s.
        where = doc if "Parameters" in _sections(doc) or not init_doc else init_doc
        problems += _check_parameters(qualname, where, _param_names(sig), *PARAMETER_SECTIONS)
    for name, func, is_property in _members(obj):
        method, method_doc = f"{qualname}.{name}", _docstring(func)
        if is_property:
            # numpydoc documents a property in its own docstring or the class's Attributes.
            if not method_doc and name not in _documented(doc, "Attributes"):
                problems.append(f"{method}: no docstring")
        elif not method_doc:
            problems.append(f"{method}: no docstring")
        elif set(PARAMETER_SECTIONS) & set(_sections(method_doc)):
            # Methods: a Parameters section is not required, but one that exists is exact.
            params = _param_names(_signature(func))
            problems += _check_parameters(method, method_doc, params, *PARAMETER_SECTIONS)
    return problems


@pytest.mark.parametrize(("qualname", "obj"), PUBLIC, ids=IDS)
def test_docstring(qualname: str, obj: Any) -> None:
    """(c) numpydoc ``Parameters`` document exactly the signature's parameters."""
    problems = _docstring_problems(qualname, obj)
    assert not problems, "\n".join(problems)


# --- (d) config dataclasses -------------------------------------------------------------------


@pytest.mark.parametrize(("qualname", "obj"), CONFIGS, ids=[q for q, _ in CONFIGS])
def test_config(qualname: str, obj: Any) -> None:
    """(d) ``*Config`` classes are frozen dataclasses documenting every field."""
    assert dataclasses.is_dataclass(obj), f"{qualname} is not a dataclass"
    assert obj.__dataclass_params__.frozen, f"{qualname} is not frozen"
    fields = [field.name for field in dataclasses.fields(obj)]
    documented = _documented(_docstring(obj), "Parameters", "Attributes")
    missing = [f for f in fields if f not in documented]
    assert not missing, f"{qualname}: fields not documented in the class docstring: {missing}"


def _violating(
    x: int, adata: anndata.AnnData, k: int = 1, *, sample_key: str = "samples", n_key: int = 0
) -> None:
    """A function that breaks every rule (the checks must not be vacuous).

    Parameters
    ----------
    x
        Documented.
    ghost
        Not a parameter.
    """


@dataclass(frozen=True)
class _Record:
    """A record.

    Attributes
    ----------
    size
        Documented.
    """

    size: int = 1
    drug_key: str | None = None


def test_the_checks_catch_violations() -> None:
    """Each rule reports what it exists for, on a function and a record made to fail."""
    signature = "\n".join(_signature_problems("t._violating", _violating))
    assert "takes an AnnData (adata) but its first parameter is 'x'" in signature
    assert "option 'k' has a default but is not keyword-only" in signature
    keys = "\n".join(_obs_key_problems("t._violating", _violating))
    assert "sample_key: default must be 'sample'" in keys
    assert "n_key: a key is typed `str`" in keys
    docs = "\n".join(_docstring_problems("t._violating", _violating))
    assert "not documented: ['adata', 'k', 'sample_key', 'n_key']" in docs
    assert "do not exist: ['ghost']" in docs
    assert "drug_key: default must be 'drug'" in "\n".join(_obs_key_problems("t._Record", _Record))
    assert "not documented: ['drug_key']" in "\n".join(_docstring_problems("t._Record", _Record))


def test_configs_found() -> None:
    """The config check is not vacuous."""
    assert {"poppy.POPPYConfig", "bird.BirdConfig", "bird.AlignConfig"} <= {q for q, _ in CONFIGS}


def test_every_subpackage_walked() -> None:
    """A new subpackage cannot escape these checks: each is walked or listed as not walked."""
    import pkgutil

    import cellbridge

    names = {m.name for m in pkgutil.iter_modules(cellbridge.__path__) if m.name[0] != "_"}
    assert names == set(SUBPACKAGES) | set(NOT_WALKED)


def test_allow_lists_are_live() -> None:
    """An allow-list entry that no longer matches anything must be removed."""
    names, params = set(), set()
    for qualname, obj in PUBLIC:
        for name, sig, _ in _callables(qualname, obj):
            names.add(name)
            params |= {f"{name}.{param}" for param in sig.parameters}
    stale = [n for n in ANNDATA_NOT_FIRST if n not in names]
    stale += [p for p in (*POSITIONAL_OPTIONS, *OBS_KEY_DEFAULTS) if p not in params]
    assert not stale, f"allow-list entries that match nothing: {stale}"


# --- the API reference ------------------------------------------------------------------------


def test_api_reference_is_current(tmp_path: Path) -> None:
    """docs/api.md is what scripts/make_api_reference.py writes from the current code."""
    spec = importlib.util.spec_from_file_location(
        "make_api_reference", ROOT / "scripts" / "make_api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.SUBPACKAGES == SUBPACKAGES, "the reference and these checks walk the same API"
    fresh = tmp_path / "api.md"
    script.write_reference(fresh)
    committed = ROOT / "docs" / "api.md"
    assert committed.is_file(), "docs/api.md is missing: run `python scripts/make_api_reference.py`"
    assert fresh.read_text() == committed.read_text(), (
        "docs/api.md is stale (the public API or a docstring changed): "
        "run `python scripts/make_api_reference.py` and commit docs/api.md"
    )
