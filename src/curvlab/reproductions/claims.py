"""Pre-registered claims: one TOML file per reproduction, committed before the runs it scores.

A claims file (``claims/<name>.toml`` beside this module) holds, for one reproduction, everything that must be fixed
before a run can be taken as evidence: the setting the full runs use (``[setting]``), the fresh seeds they run on
(``seeds``: never run before the file was committed), the paper's own smallest setting beside ours, and for each
check the paper's sentence it tests (quoted, with its section), the statistic and its threshold (``threshold``: the
numbers the check's code reads, never literals in the code), why that threshold is what the paper shows, a
*contrast* — a run where the phenomenon is absent, on which the check must fail (a test runs it) — and the check's
*power*: why it can pass at the run's length.

Every stored run records the SHA-256 of the claims file it ran under; ``scripts/reproductions_doc.py`` refuses a
stored run whose hash differs from the file's (the checks or the setting changed after the run).
"""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curvlab.errors import InputError, MissingInputFile

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
SCALES_FILE = Path(__file__).resolve().parent / "scales.toml"
PILOT_SEEDS = (0, 1, 2)  # the seeds the earlier settings ran on: a pilot may use them, a verdict may not
SCALES = ("quick", "full", "paper")
_TOP = ("name", "claim", "paper", "paper_setting", "our_setting", "registered", "seeds", "setting", "checks")
_CHECK = ("id", "quote", "where", "statistic", "threshold", "why", "contrast", "contrast_setting", "power")


@dataclass(frozen=True)
class CheckSpec:
    """One pre-registered check: what the paper says, how it is scored, and why it can fail and pass."""

    id: str
    quote: str  # the paper's sentence (or figure caption) the check tests, verbatim
    where: str  # its place in the paper: section, figure, table
    statistic: str  # what is computed from one seed's run, in words
    threshold: dict[str, Any]  # the numbers the check compares against, read by the code
    why: str  # why this threshold is what the paper shows
    contrast: str  # a run without the phenomenon, on which the check must fail (tests/test_preregistration.py)
    contrast_setting: dict[str, Any]  # what that run changes in the quick setting
    power: str  # why the check can pass at the run's length: a calculation or a pilot on seeds 0–2


@dataclass(frozen=True)
class Claims:
    """A reproduction's pre-registration, as read from its claims file."""

    name: str
    claim: str
    paper: str
    paper_setting: str
    our_setting: str
    registered: str  # the date it was written, before the runs
    seeds: tuple[int, ...]
    setting: dict[str, Any]
    checks: tuple[CheckSpec, ...]
    path: Path
    sha256: str
    disclosure: str = ""  # anything that happened before the commit a reader must know (a run seen early)

    def check(self, check_id: str) -> CheckSpec:
        """The check named ``check_id``."""
        for spec in self.checks:
            if spec.id == check_id:
                return spec
        raise InputError(f"check: {self.name} has no pre-registered check {check_id!r}; it has {self.check_ids}")

    @property
    def check_ids(self) -> list[str]:
        return [spec.id for spec in self.checks]


def thresholds(name: str) -> dict[str, dict[str, Any]]:
    """Each pre-registered check's thresholds by its id, as the checks' code reads them."""
    return {spec.id: spec.threshold for spec in load_claims(name).checks}


def claims_path(name: str) -> Path:
    return CLAIMS_DIR / f"{name}.toml"


def has_claims(name: str) -> bool:
    """Whether the reproduction ``name`` is pre-registered (has a claims file)."""
    return claims_path(name).exists()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_claims(name: str) -> Claims:
    """Read and validate the claims file of reproduction ``name``."""
    path = claims_path(name)
    if not path.exists():
        raise MissingInputFile(f"claims: {name!r} has no claims file ({path})")
    raw = _parse(path)
    missing = [key for key in _TOP if key not in raw]
    if missing:
        raise InputError(f"claims: {path.name} lacks {missing}")
    if raw["name"] != name:
        raise InputError(f"claims: {path.name} names {raw['name']!r}, expected {name!r}")
    seeds = tuple(raw["seeds"])
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) or set(seeds) & set(PILOT_SEEDS):
        raise InputError(f"claims: {path.name} seeds: expected fresh non-negative seeds, none of {PILOT_SEEDS}")
    checks = tuple(_check(path, entry) for entry in raw["checks"])
    ids = [spec.id for spec in checks]
    if not checks or len(set(ids)) != len(ids):
        raise InputError(f"claims: {path.name} checks: expected at least one, with distinct ids, got {ids}")
    return Claims(
        name=name,
        claim=_text(path, raw, "claim"),
        paper=_text(path, raw, "paper"),
        paper_setting=_text(path, raw, "paper_setting"),
        our_setting=_text(path, raw, "our_setting"),
        registered=_text(path, raw, "registered"),
        seeds=seeds,
        setting=dict(raw["setting"]),
        checks=checks,
        path=path,
        sha256=file_sha256(path),
        disclosure=_text(path, raw, "disclosure") if "disclosure" in raw else "",
    )


def committed(path: Path) -> dict[str, Any]:
    """The git commit that last changed ``path`` (its pre-registration), when it was made, and whether the file
    differs from it now; empty where ``path`` is not in a git checkout (an installed package)."""
    try:
        log = _git(path, "log", "-1", "--format=%H %cI", "--", path.name)
        dirty = _git(path, "status", "--porcelain", "--", path.name)
    except (OSError, subprocess.CalledProcessError):
        return {}
    if not log:
        return {"claims_commit": None, "claims_uncommitted": True}
    commit, when = log.split()
    return {"claims_commit": commit, "claims_committed_at": when, "claims_uncommitted": bool(dirty)}


def _git(path: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def scale_overrides(name: str, scale: str) -> dict[str, Any]:
    """What the ``quick`` or ``paper`` scale of reproduction ``name`` changes in its full setting (scales.toml)."""
    if scale not in SCALES:
        raise InputError(f"scale: expected one of {list(SCALES)}, got {scale!r}")
    if scale == "full":
        return {}
    table = _parse(SCALES_FILE).get(name, {})
    if scale not in table:
        raise InputError(f"scale: {name!r} has no {scale!r} setting in {SCALES_FILE.name}")
    return dict(table[scale])


def _parse(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"claims: {path.name} is not valid TOML: {err}") from None


def _text(path: Path, table: dict, key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"claims: {path.name} {key}: expected a non-empty text, got {value!r}")
    return " ".join(value.split())


def _check(path: Path, entry: dict) -> CheckSpec:
    missing = [key for key in _CHECK if key not in entry]
    if missing:
        raise InputError(f"claims: {path.name} check {entry.get('id', '?')!r} lacks {missing}")
    tables: dict[str, Any] = {}
    for key in ("threshold", "contrast_setting"):
        if not isinstance(entry[key], dict) or not entry[key]:
            raise InputError(f"claims: {path.name} check {entry['id']!r} {key}: expected a non-empty table")
        tables[key] = dict(entry[key])
    texts: dict[str, Any] = {key: _text(path, entry, key) for key in _CHECK if key not in tables}
    return CheckSpec(**tables, **texts)
