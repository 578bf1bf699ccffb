"""The container image: builds, reports the package version, runs the demo dataset read-only,
offline and as an arbitrary UID with bind mounts only, and writes what a native run writes.

The image is ``$BIDS_REGIONX_IMAGE`` (default ``localhost/bids_regionx:dev``); it is built with
``../shared/tools/container-build.sh`` when missing or when ``BIDS_REGIONX_REBUILD=1``
(``scripts/integration.sh`` builds it first and times the build). Needs podman (root).

``--read-only-tmpfs=false`` is added to podman's ``--read-only``: podman would otherwise mount
writable tmpfs on /tmp, /var/tmp and /run, which ``docker run --read-only`` does not. Without it
the only writable paths are the bind mounts, so these runs also prove that nothing is written to
$HOME, /tmp or the image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("BIDS_REGIONX_IMAGE", "localhost/bids_regionx:dev")
UID_GID = "1234:1234"
READ_ONLY = ["--read-only", "--read-only-tmpfs=false", "--network", "none", "--user", UID_GID]
#: a guard against accidental bloat (measured: ~0.67 GB with the debootstrapped base)
MAX_IMAGE_BYTES = 1_000_000_000


def _package_version() -> str:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="session")
def podman_env(itools) -> dict[str, str]:
    """The environment ``container-env.sh`` sets up (storage and runtime config for podman)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/integration.sh installs it)")
    env_script = itools.SHARED_TOOLS / "container-env.sh"
    if not env_script.exists():
        pytest.skip(f"{env_script} not found (set BIDS_REGIONX_SHARED_TOOLS)")
    out = subprocess.run(
        ["bash", "-c", f'source "{env_script}" >/dev/null && env -0'],
        check=True, capture_output=True,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def podman(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        pytest.fail(f"podman {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def image(podman_env, itools) -> str:
    exists = podman(podman_env, "image", "exists", IMAGE, check=False).returncode == 0
    if not exists or os.environ.get("BIDS_REGIONX_REBUILD") == "1":
        build = itools.SHARED_TOOLS / "container-build.sh"
        itools.run_checked([str(build), str(REPO), IMAGE], label="image build", env=podman_env)
    return IMAGE


def _writable_dir(path: Path) -> Path:
    """A bind-mount target the container's UID can write to."""
    path.mkdir(parents=True, exist_ok=True)
    uid, gid = (int(x) for x in UID_GID.split(":"))
    os.chown(path, uid, gid)
    return path


def test_version_equals_package_version(podman_env, image):
    proc = podman(podman_env, "run", "--rm", *READ_ONLY, image, "--version")
    assert proc.stdout.strip() == f"bids_regionx {_package_version()}"


def test_help(podman_env, image):
    proc = podman(podman_env, "run", "--rm", *READ_ONLY, image, "--help")
    assert proc.stdout.startswith("usage: bids_regionx")


def test_image_metadata(podman_env, image, itools):
    info = json.loads(podman(podman_env, "image", "inspect", image).stdout)[0]
    config = info["Config"]
    labels = config["Labels"]
    version = _package_version()
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.source"].startswith("https://")
    for key in ("revision", "created", "title", "licenses"):
        assert f"org.opencontainers.image.{key}" in labels
    assert config["Entrypoint"] == ["bids_regionx"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MPLBACKEND"] == "Agg"
    assert env["NIPYPE_NO_ET"] == "1"
    assert env["BIDS_REGIONX_CONTAINER_IMAGE"].startswith("bids_regionx:")
    size = int(info["Size"])
    itools.record_timing("image size", size / 1e6, "MB")
    assert size < MAX_IMAGE_BYTES, f"image is {size / 1e9:.2f} GB"


def test_image_cli_matches_descriptor(podman_env, image):
    """The descriptor generated inside the image is the checked-in one (same CLI)."""
    proc = podman(podman_env, "run", "--rm", *READ_ONLY, "--entrypoint", "python", image,
                  "-m", "bids_regionx.cli.boutiques")
    assert proc.stdout == (REPO / "descriptor.json").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def native_demo(demo_dataset, integration_dir, itools) -> Path:
    out = integration_dir / "native" / "out"
    work = integration_dir / "native" / "work"
    shutil.rmtree(out.parent, ignore_errors=True)
    itools.run_native(demo_dataset, out, work, label="demo, native")
    itools.check_derivatives(out, demo_dataset.subjects)
    return out


def _container_run(itools, podman_env, image, mounts, bids, out, work, extra=(), label=""):
    args = ["run", "--rm", *READ_ONLY]
    for host, target, mode in mounts:
        args += ["-v", f"{host}:{target}:{mode}"]
    args += [image, bids, out, "participant", *extra, "-w", work]
    start = time.perf_counter()
    proc = podman(podman_env, *args, check=False)
    itools.record_timing(label, time.perf_counter() - start)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-8000:]}"
    return proc


def test_demo_read_only_same_paths(
    podman_env, image, demo_dataset, native_demo, integration_dir, itools
):
    """Inputs bound at their host paths: every output equal to the native run's."""
    base = integration_dir / "container-same-paths"
    shutil.rmtree(base, ignore_errors=True)
    out, work = _writable_dir(base / "out"), _writable_dir(base / "work")
    root = demo_dataset.root
    _container_run(
        itools, podman_env, image,
        [(root, root, "ro"), (out, out, "rw"), (work, work, "rw")],
        str(demo_dataset.fmriprep), str(out), str(work), demo_dataset.app_args(),
        label="demo, container (read-only, no network, uid 1234)",
    )
    itools.check_derivatives(out, demo_dataset.subjects)
    assert itools.compare_derivatives(native_demo, out, container=True) == []
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Container"] == {
        "Type": "docker", "Tag": f"bids_regionx:{_package_version()}",
    }
    owners = {p.stat().st_uid for p in out.rglob("*")}
    assert owners == {1234}, "outputs must belong to the container user"


def test_demo_read_only_standard_mounts(
    podman_env, image, demo_dataset, native_demo, integration_dir, itools
):
    """The documented layout (/data:ro, /out, /work): equal once /data is mapped back."""
    base = integration_dir / "container-standard-mounts"
    shutil.rmtree(base, ignore_errors=True)
    out, work = _writable_dir(base / "out"), _writable_dir(base / "work")
    root = demo_dataset.root
    extra = ["-d", f"atlases=/data/{demo_dataset.maps.name}", "--atlas", demo_dataset.atlas]
    _container_run(
        itools, podman_env, image,
        [(root, "/data", "ro"), (out, "/out", "rw"), (work, "/work", "rw")],
        f"/data/{demo_dataset.fmriprep.name}", "/out", "/work", extra,
        label="demo, container (standard mounts)",
    )
    itools.check_derivatives(out, demo_dataset.subjects)
    differences = itools.compare_derivatives(
        native_demo, out, container=True, path_map={"/data/": f"{root}/"}
    )
    assert differences == []


def test_default_work_dir_fails_cleanly(podman_env, image, demo_dataset, integration_dir):
    """Forgetting -w in a read-only container is a one-line error (exit 73), not a traceback."""
    out = _writable_dir(integration_dir / "container-no-workdir" / "out")
    root = demo_dataset.root
    proc = podman(
        podman_env, "run", "--rm", *READ_ONLY, "-v", f"{root}:/data:ro", "-v", f"{out}:/out:rw",
        image, f"/data/{demo_dataset.fmriprep.name}", "/out", "participant",
        *["-d", f"atlases=/data/{demo_dataset.maps.name}", "--atlas", demo_dataset.atlas],
        check=False,
    )
    assert proc.returncode == 73, proc.stderr  # EX_CANTCREAT
    assert "Traceback" not in proc.stderr
    assert "bids_regionx: error:" in proc.stderr
