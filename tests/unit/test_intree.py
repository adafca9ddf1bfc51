"""The suite placed in a kernel tree (Debian's linux-source-6.12, fetched
once and cached): make run_tests through the tree's own runner.sh names the
collection rmap wherever the tree lives; make install adds the collection to
a kselftest install whose run_kselftest.sh runs it under a python3 holding
only the standard library; the KTAP is accepted by the tree's KTAP parser
(kunit.py parse) and by tap.py read the way LKFT reads nested kselftest
output, and the names a CI derives are the standalone ones. This host cannot
time rmap walks, so every program SKIPs here (the guest test measures)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kernel_tree
import pytest
from kernel_tree import lkft_names

from rmapbench.bench import cases

SUITE = kernel_tree.SUITE
PROGRAMS = [p.name for p in cases.programs()]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
LAB = Path(__file__).resolve().parents[2] / "automated" / "linux" / "rmap" / "rmap.sh"


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: int = 600) -> subprocess.CompletedProcess[str]:
    # Through pipes: runner.sh appends to /dev/stdout (see rmap.sh).
    return subprocess.run(argv, capture_output=True, text=True, env={**ENV, **(env or {})},
                          cwd=cwd or "/", timeout=timeout, check=False)


def empty_python(where: Path) -> Path:
    """A python3 with nothing but the standard library: a venv without pip
    made from the base interpreter; its bin/ goes first on PATH."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python3"
    for module in ("ptrace", "tap", "yaml", "more_itertools", "numpy"):
        probe = run([str(python), "-c", f"import {module}"])
        assert probe.returncode != 0, f"{python} imports {module}"
    return python


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kernel_tree.tree_with_suite(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_python(tmp_path_factory.mktemp("venv") / "empty")


def in_tree_rmap(tree: Path) -> Path:
    return tree / "tools" / "testing" / "rmap"


def results(ktap: str) -> list[str]:
    return [ln for ln in ktap.splitlines() if ln.startswith(("ok ", "not ok "))]


def check_run_tests(proc: subprocess.CompletedProcess[str], tree: Path) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["TAP version 13", f"1..{len(PROGRAMS)}"]
    assert [ln for ln in lines if ln.startswith("# selftests:")] == [
        f"# selftests: rmap: {p}" for p in PROGRAMS]
    assert results(proc.stdout) == [
        f"ok {n} selftests: rmap: {p} # SKIP" for n, p in enumerate(PROGRAMS, 1)]
    assert lines.count("# timeout set to 3600") == len(PROGRAMS)  # the settings file
    named = [ln for ln in lines if "selftests:" in ln]  # diagnostics may name paths
    assert not [ln for ln in named if "/" in ln]


def test_run_tests_in_a_tree_with_the_projects_environment(tree: Path) -> None:
    proc = run(["make", "-s", "-C", str(in_tree_rmap(tree)), "run_tests",
                f"PYTHON={sys.executable}"])
    check_run_tests(proc, tree)
    assert "python-ptrace missing" not in proc.stdout  # the packages were there


def test_run_tests_in_a_tree_with_a_stdlib_only_python3(tree: Path, bare: Path) -> None:
    proc = run(["make", "-s", "-C", str(in_tree_rmap(tree)), "run_tests"],
               env={"PATH": f"{bare.parent}:{ENV['PATH']}"})
    check_run_tests(proc, tree)
    assert proc.stdout.count("# SKIP python-ptrace missing") == len(PROGRAMS)


def test_options_and_timeout_reach_the_programs_in_a_tree(tree: Path) -> None:
    def run_tests(**env: str) -> str:
        return run(["make", "-s", "-C", str(in_tree_rmap(tree)), "run_tests",
                    f"PYTHON={sys.executable}"], env=env).stdout

    one = run_tests(KSELFTEST_RMAP_KSM_PY_ARGS="--pages 0", kselftest_override_timeout="77")
    assert results(one)[0] == "not ok 1 selftests: rmap: rmap_ksm.py # exit=2"
    assert "# rmap_ksm.py: error: argument --pages: must be at least 1" in one
    assert all(ln.endswith("# SKIP") for ln in results(one)[1:])
    assert one.count("# overriding timeout to 77") == len(PROGRAMS)
    every = run_tests(RMAP_ARGS="--samples 0")
    assert all(ln.endswith("# exit=2") for ln in results(every))
    assert every.count("--samples: must be at least 1") == len(PROGRAMS)


def test_ktap_parsers_accept_it_and_names_match_standalone(tree: Path) -> None:
    in_tree = run(["make", "-s", "-C", str(in_tree_rmap(tree)), "run_tests",
                   f"PYTHON={sys.executable}"]).stdout
    standalone = run(["make", "-s", "-C", str(SUITE), "run_tests",
                      f"PYTHON={sys.executable}"]).stdout
    ktap = tree / "run_tests.ktap"
    ktap.write_text(in_tree)
    kunit = tree / "tools" / "testing" / "kunit" / "kunit.py"
    # kunit.py parse exits 1 unless the run as a whole passed, and an
    # all-skipped run is SKIPPED: read its verdict per test instead.
    report = tree / "kunit.json"
    parsed = run([sys.executable, str(kunit), "parse", f"--json={report}", str(ktap)])
    assert f"Ran {len(PROGRAMS)} tests: skipped: {len(PROGRAMS)}" in parsed.stdout, parsed.stdout
    assert "ERROR" not in parsed.stdout and "WARNING" not in parsed.stdout, parsed.stdout
    kunit_cases = json.loads(report.read_text())["test_cases"]
    assert [(c["name"], c["status"]) for c in kunit_cases] == [
        (f"selftests: rmap: {p}", "SKIP") for p in PROGRAMS]
    names = lkft_names(in_tree)
    assert names == lkft_names(standalone)
    stems = [p.removesuffix(".py") for p in PROGRAMS]
    assert [n for n, _ in names if "walk_latency" not in n] == [f"rmap_{s}_py" for s in stems]
    for (name, result), stem in zip(names[::2], stems, strict=True):
        assert name.startswith(f"rmap_{stem}_py_{stem}_walk_latency"), name
        assert result == "skip"
    assert len({n for n, _ in names}) == len(names)  # unique
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n, _ in names)


def installed(dest: Path) -> tuple[list[str], int]:
    files = [str(p.relative_to(dest)) for p in sorted((dest / "rmap").rglob("*")) if p.is_file()]
    return files, sum((dest / f).stat().st_size for f in files)


@pytest.fixture(scope="module")
def device(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kselftest install: the tree's runner files, then the suite's
    make install, twice."""
    dest = kernel_tree.kselftest_install(tree, tmp_path_factory.mktemp("kselftest"))
    for _ in range(2):
        proc = run(["make", "-s", "-C", str(in_tree_rmap(tree)), "install",
                    f"INSTALL_PATH={dest}", f"PYTHON={sys.executable}"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


def test_install_lays_out_the_collection(device: Path) -> None:
    listing = (device / "kselftest-list.txt").read_text().splitlines()
    assert listing == ["size:get_size", *(f"rmap:{p}" for p in PROGRAMS)]  # once each
    rmap = device / "rmap"
    for prog in PROGRAMS:
        assert os.access(rmap / prog, os.X_OK)
    assert (rmap / "settings").read_text().strip() == "timeout=3600"
    assert (rmap / "rmapbench" / "bench" / "program.py").is_file()
    assert not (rmap / "rmapbench" / "analysis").exists()  # numpy's wing stays home
    assert not (rmap / "rmapbench" / "guest").exists()
    bundled = (rmap / "vendor" / "BUNDLED.txt").read_text()
    for pin in ("tap.py==3.2.1", "PyYAML==6.0.4", "more-itertools==11.2.1",
                "python-ptrace==0.9.9"):
        assert pin in bundled
    for package in ("tap", "yaml", "more_itertools", "ptrace"):
        assert (rmap / "vendor" / package / "__init__.py").is_file()
    files, size = installed(device)
    assert not [f for f in files if f.endswith((".so", ".pyc"))]
    assert size < 4 << 20, size
    print(f"installed collection: {len(files)} files, {size} bytes")


def test_standalone_install_matches(device: Path, tmp_path: Path) -> None:
    proc = run(["make", "-s", "-C", str(SUITE), "install", f"INSTALL_PATH={tmp_path}",
                f"PYTHON={sys.executable}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "kselftest-list.txt").read_text().splitlines() == [
        f"rmap:{p}" for p in PROGRAMS]
    assert installed(tmp_path)[0] == installed(device)[0]


def test_installed_library_imports_with_the_stdlib_only(device: Path, bare: Path) -> None:
    """Every module a device can load, under a python3 without site
    packages: it imports from vendor/ and never numpy, scipy or matplotlib."""
    rmap = device / "rmap"
    code = (
        "import sys, pkgutil, importlib\n"
        f"sys.path[:0] = [{str(rmap)!r}, {str(rmap / 'vendor')!r}]\n"
        "import rmapbench, ptrace, tap, yaml, more_itertools\n"
        "for m in pkgutil.walk_packages(rmapbench.__path__, 'rmapbench.'):\n"
        "    if m.name != 'rmapbench.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "from rmapbench.bench import pipeline\n"
        "heavy = {'numpy', 'scipy', 'matplotlib'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, heavy\n"
        "assert all(sys.modules[m].__file__.startswith(sys.path[1]) for m in\n"
        "           ('ptrace', 'tap', 'yaml', 'more_itertools'))\n"
        "print('ok')\n"
    )
    proc = run([str(bare), "-c", code])
    assert proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_run_kselftest_runs_the_installed_collection(device: Path, bare: Path) -> None:
    env = {"PATH": f"{bare.parent}:{ENV['PATH']}"}
    proc = run([str(device / "run_kselftest.sh"), "-c", "rmap"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout
    assert "missing" not in proc.stdout  # the bundle was importable
    assert results(proc.stdout) == [
        f"ok {n} selftests: rmap: {p} # SKIP" for n, p in enumerate(PROGRAMS, 1)]
    one = run([str(device / "run_kselftest.sh"), "-t", "rmap:rmap_ksm.py"], env=env)
    assert results(one.stdout) == ["ok 1 selftests: rmap: rmap_ksm.py # SKIP"]
    assert "# ok 1 rmap_ksm.walk_latency # SKIP" in one.stdout


def test_lab_script_reports_skips_as_skips(device: Path, bare: Path, tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "lava.log"
    (fake / "lava-test-case").write_text(f'#!/bin/sh\necho "$*" >> {record}\n')
    (fake / "lava-test-case").chmod(0o755)
    proc = run([str(LAB), "-p", str(device), "-o", str(tmp_path / "out"),
                "-t", "rmap_ksm.py rmap_anon.py"],
               env={"PATH": f"{fake}:{bare.parent}:{ENV['PATH']}"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert record.read_text().splitlines() == ["rmap_ksm --result skip",
                                               "rmap_anon --result skip"]
    assert (tmp_path / "out" / "results" / "rmap_ksm.result.txt").is_file()


def test_lab_script_replaces_only_its_own_output(device: Path, bare: Path,
                                                tmp_path: Path) -> None:
    """-o names a directory the script empties: an earlier run's output is
    replaced, anything else (a home directory given by mistake) refused."""
    env = {"PATH": f"{bare.parent}:{ENV['PATH']}"}
    out = tmp_path / "out"
    for _ in range(2):  # the second run replaces the first's
        proc = run([str(LAB), "-p", str(device), "-o", str(out), "-t", "rmap_anon.py"],
                   env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine\n")
    for target in (precious, precious / "notes.txt"):
        proc = run([str(LAB), "-p", str(device), "-o", str(target), "-t", "rmap_anon.py"],
                   env=env, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.startswith("rmap.sh: "), proc.stderr
    assert (precious / "notes.txt").read_text() == "mine\n"


def test_lab_script_is_shellcheck_clean() -> None:
    proc = run(["shellcheck", str(LAB)])
    assert proc.returncode == 0, proc.stdout


def test_bundle_from_a_wheel_directory_keeps_python_only(tmp_path: Path) -> None:
    """WHEELS=DIR (an offline lab): a package the environment lacks comes
    from its pinned wheel, without compiled extensions or install records."""
    import zipfile

    from rmapbench.ksft import install

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "fake_pkg-1.0-cp311-cp311-linux_x86_64.whl", "w") as zf:
        zf.writestr("fake_pkg/__init__.py", "X = 1\n")
        zf.writestr("fake_pkg/_speedups.cpython-311-x86_64-linux-gnu.so", b"\x7fELF")
        zf.writestr("fake_pkg-1.0.dist-info/METADATA", "Name: fake-pkg\nVersion: 1.0\n")
        zf.writestr("fake_pkg-1.0.dist-info/RECORD", "")
    vendor = tmp_path / "vendor"
    done = install.bundle({"fake-pkg": "1.0"}, vendor, wheels=wheels)
    assert done == ["fake-pkg==1.0 from fake_pkg-1.0-cp311-cp311-linux_x86_64.whl"]
    files = sorted(str(p.relative_to(vendor)) for p in vendor.rglob("*") if p.is_file())
    assert files == ["fake_pkg-1.0.dist-info/METADATA", "fake_pkg/__init__.py"]
    with pytest.raises(install.InstallError, match=r"cannot bundle fake-pkg==2\.0"):
        install.bundle({"fake-pkg": "2.0"}, vendor, wheels=wheels, python="/bin/false")
