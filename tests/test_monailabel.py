"""Integration: every bundle in ``bundles/`` serves in a real MONAI Label 0.8.5 server (issue 5).

For each bundle (parametrised over the folders of ``bundles/``, so a new bundle is covered the day it lands):

1. the MONAI Label environment is built by ``scripts/monailabel_env.sh`` when missing (a one-off of several
   minutes, outside the checkout, keyed by ``requirements-monailabel.txt``) and reused otherwise;
2. the ``monaibundle`` sample app shipped in the monailabel wheel is copied to a temporary folder, the bundle
   is copied into its ``model/`` folder and trained briefly there with ``python -m monai.bundle run`` from
   that environment (so it also runs with numpy 1.26 and pydicom 2.4.4), on a tiny synthetic dataset whose
   images form the studies folder (2D PNG or 3D NIfTI) and whose masks are its final labels;
3. ``monailabel start_server`` runs on 127.0.0.1 with a free port, ``--conf models <bundle>``,
   ``--conf sam2 false`` and ``BUNDLE_DOWNLOAD_SRC=ngc`` (the monaibundle app then takes the local bundle
   folder and tries no model-zoo download); it is stopped (its whole process group) whatever happens;
4. ``/info/`` lists the model and trainer, ``/infer/<bundle>?image=<id>`` returns a uint8 0/1 mask of the
   image's shape that overlaps the lesion, ``/train/<bundle>`` with ``max_epochs`` 1 writes a new checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from bundle_utils import REPO_ROOT, bundle_dirs, bundle_spatial_dims, make_tiny_dataset

from usseg_monai.data.io import load_png, load_volume

# MONAI Label 0.8.5 imports torchvision at start-up, and no CPU build of torchvision is reachable from this
# project's package index: the environment uses PyPI's torch + torchvision pair (~7.7 GB,
# requirements-monailabel.txt), built once outside the checkout (#18: CI builds it and runs these tests).
# Outside CI, USSEG_MONAILABEL_TESTS=0 skips them, and an environment that cannot be built (no package index,
# no disk) skips them with the build's error; with CI=true neither applies: they always run, and a failed
# build fails.
IN_CI = os.environ.get("CI", "").lower() == "true"
OPTED_OUT = os.environ.get("USSEG_MONAILABEL_TESTS", "") == "0" and not IN_CI
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(OPTED_OUT, reason="MONAI Label integration switched off (USSEG_MONAILABEL_TESTS=0)"),
]

BUNDLES = bundle_dirs()
IDS = [b.name for b in BUNDLES]
ENV_SCRIPT = REPO_ROOT / "scripts" / "monailabel_env.sh"
# the user's cache, read before tests/conftest.py points USSEG_MONAI_CACHE at a per-session temporary folder:
# the environment is a one-off build that later sessions reuse
USER_CACHE = Path(os.environ.get("USSEG_MONAI_CACHE", Path.home() / ".cache" / "usseg_monai")).expanduser()
# brief training before serving so that the model finds the lesion: epochs, learning rate. 3D: at 0.003 the 3D
# UNet under-segmented after 10 epochs (Dice 0.25 and 0.44 on two training volumes, the bundle's own inference
# giving the same masks as the server); at 0.01 it reached 0.69-0.75 on four (measured 2026-12-03).
PRETRAIN = {2: (10, 0.003), 3: (10, 0.01)}
SERVER_START_TIMEOUT_S = 240
REQUEST_TIMEOUT_S = 600


def _env(**extra: str) -> dict[str, str]:
    """Environment for the MONAI Label processes: no PYTHONPATH, one thread, offline bundle source."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"OMP_NUM_THREADS": "1", "BUNDLE_DOWNLOAD_SRC": "ngc", "USSEG_MONAI_CACHE": str(USER_CACHE)})
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def monailabel_venv() -> Path:
    """The MONAI Label 0.8.5 virtual environment, built by scripts/monailabel_env.sh when missing."""
    start = time.monotonic()
    r = subprocess.run(
        ["bash", str(ENV_SCRIPT)], env=_env(), capture_output=True, text=True, timeout=3600, cwd=REPO_ROOT
    )
    if r.returncode != 0:
        message = f"scripts/monailabel_env.sh could not build the MONAI Label environment ({r.returncode}):\n"
        message += r.stderr[-6000:]
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    venv = Path(r.stdout.strip().splitlines()[-1])
    assert (venv / ".complete").is_file() and (venv / "bin" / "monailabel").is_file(), venv
    print(f"MONAI Label environment {venv} ready in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return venv


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sample_app(venv: Path) -> Path:
    """The monaibundle sample app as installed by the monailabel wheel (its data files, under the venv)."""
    app = venv / "monailabel" / "sample-apps" / "monaibundle"
    assert (app / "main.py").is_file(), f"monaibundle sample app not found at {app}"
    return app


def _request(url: str, method: str = "GET", body: dict | None = None, timeout: float = REQUEST_TIMEOUT_S):
    """(status, headers, bytes) of an HTTP request; the body, if any, is sent as JSON."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Server:
    """A running ``monailabel start_server`` and the folders it serves."""

    def __init__(self, venv: Path, root: Path, bundle: Path):
        self.name = bundle.name
        self.dims = bundle_spatial_dims(bundle)
        self.ext = ".png" if self.dims == 2 else ".nii.gz"
        self.app = root / "app"
        shutil.copytree(_sample_app(venv), self.app)
        self.bundle_dir = self.app / "model" / self.name
        shutil.copytree(bundle, self.bundle_dir)
        self.dataset = make_tiny_dataset(root / "data", spatial_dims=self.dims, counts=(6, 2, 0), empty_in_test=False)
        self.studies = root / "studies"
        self.cases: dict[str, Path] = {}  # image id -> ground-truth mask in the dataset
        datalist = json.loads((self.dataset / "datalist.json").read_text())
        for item in datalist["training"] + datalist["validation"]:
            image = self.dataset / item["image"]
            case = image.name[: -len(self.ext)]
            (self.studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
            shutil.copy2(image, self.studies / image.name)
            shutil.copy2(self.dataset / item["label"], self.studies / "labels" / "final" / image.name)
            self.cases[case] = self.dataset / item["label"]
        self.venv = venv
        self.log_path = root / "server.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def pretrain(self) -> float:
        """Train the copied bundle briefly with ``python -m monai.bundle run`` from the MONAI Label env."""
        epochs, lr = PRETRAIN[self.dims]
        cmd = [
            str(self.venv / "bin" / "python"), "-m", "monai.bundle", "run",
            "--config_file", str(self.bundle_dir / "configs" / "train.json"),
            "--meta_file", str(self.bundle_dir / "configs" / "metadata.json"),
            "--bundle_root", str(self.bundle_dir), "--dataset_dir", str(self.dataset),
            "--max_epochs", str(epochs), "--learning_rate", str(lr), "--batch_size", "2",
            "--progress_bar", "false",
        ]  # fmt: skip
        train_cfg = json.loads((self.bundle_dir / "configs" / "train.json").read_text())
        if "optimizer_name" in train_cfg:
            # e.g. CRBNet's reference SGD with poly decay barely moves in 20 iterations; the brief pre-training
            # only has to give the server a model that finds the lesion, so it uses AdamW like the reference bundles
            cmd += ["--optimizer_name", "adamw"]
        start = time.monotonic()
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900, cwd=self.bundle_dir)
        assert r.returncode == 0, f"pre-training failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
        assert (self.bundle_dir / "models" / "model.pt").is_file()
        # leave the bundle as a user would receive it: configs + model.pt (no eval outputs, no resume state)
        (self.bundle_dir / "models" / "checkpoint.pt").unlink(missing_ok=True)
        shutil.rmtree(self.bundle_dir / "eval", ignore_errors=True)
        return time.monotonic() - start

    def start(self) -> None:
        cmd = [
            str(self.venv / "bin" / "monailabel"), "start_server",
            "--app", str(self.app), "--studies", str(self.studies),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--conf", "models", self.name, "--conf", "sam2", "false", "--conf", "preload", "false",
        ]  # fmt: skip
        env = _env(PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(self.venv))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.app, start_new_session=True
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"monailabel exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, _ = _request(self.url + "/info/", timeout=5)
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(2)
        raise AssertionError(f"monailabel did not answer /info/ within {SERVER_START_TIMEOUT_S} s:\n{self.log()}")

    def log(self, tail: int = 8000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server's whole process group (uvicorn workers, training subprocesses)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=30)
        if getattr(self, "_log", None) is not None:
            self._log.close()


@pytest.fixture(scope="module", params=BUNDLES, ids=IDS)
def server(request, monailabel_venv, tmp_path_factory):
    """A MONAI Label server with one (briefly trained) bundle; stopped at the end whatever happened."""
    bundle: Path = request.param
    srv = Server(monailabel_venv, tmp_path_factory.mktemp(f"monailabel_{bundle.name}"), bundle)
    secs = srv.pretrain()
    print(f"{bundle.name}: pre-trained in {secs:.0f} s", file=sys.stderr)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
    assert srv.proc is None or srv.proc.poll() is not None, "the server is still running"


def test_info_lists_the_bundle(server: Server):
    status, _, body = _request(server.url + "/info/")
    assert status == 200, body[:2000]
    info = json.loads(body)
    assert server.name in info["models"], (sorted(info["models"]), server.log())
    model = info["models"][server.name]
    assert model["type"] == "segmentation"
    assert model["dimension"] == server.dims
    assert model["labels"] == {"lesion": 1}
    assert server.name in info["trainers"]
    assert "sam_2d" not in info["models"] and "sam_3d" not in info["models"]  # --conf sam2 false
    status, _, body = _request(server.url + "/datastore/?output=stats")
    assert status == 200, body[:2000]
    stats = json.loads(body)
    assert stats["total"] == len(server.cases) and stats["completed"] == len(server.cases), stats


def _load_mask(path: Path, dims: int) -> np.ndarray:
    """A mask file as a (x, y[, z]) array, with its on-disk dtype."""
    if dims == 2:
        from PIL import Image

        return np.asarray(Image.open(path)).T  # PIL gives (rows, cols) = (y, x)
    return np.asarray(load_volume(path)[0])


def test_infer_returns_the_lesion_mask(server: Server, tmp_path):
    overlaps = []
    for case, truth_path in sorted(server.cases.items())[:2]:
        status, headers, body = _request(f"{server.url}/infer/{server.name}?image={case}&output=image", "POST")
        assert status == 200, (body[:2000], server.log())
        disposition = headers.get("content-disposition", headers.get("Content-Disposition", ""))
        assert server.ext in disposition, disposition
        out = tmp_path / f"{case}_pred{server.ext}"
        out.write_bytes(body)
        pred = _load_mask(out, server.dims)
        truth = (load_png(truth_path) if server.dims == 2 else np.asarray(load_volume(truth_path)[0])) > 0
        image = load_png(server.studies / f"{case}{server.ext}") if server.dims == 2 else None
        assert pred.shape == truth.shape, (pred.shape, truth.shape)
        if image is not None:
            assert pred.shape == image.shape
        if server.dims == 2:
            assert pred.dtype == np.uint8, pred.dtype
        else:  # the volume's geometry: voxel size as in the study's header, integer labels on disk
            import nibabel as nib

            got, ref = nib.load(str(out)), nib.load(str(server.studies / f"{case}{server.ext}"))
            assert got.get_data_dtype() == np.uint8, got.get_data_dtype()
            np.testing.assert_allclose(got.header.get_zooms()[:3], ref.header.get_zooms()[:3], rtol=1e-5)
        assert set(np.unique(pred)) <= {0, 1}, np.unique(pred)
        p = pred > 0
        assert p.any(), f"{case}: empty prediction"
        overlaps.append(2.0 * (p & truth).sum() / (p.sum() + truth.sum()))
    assert min(overlaps) > 0.4, overlaps  # Dice with the true lesion of a training image


def test_infer_json_names_the_label(server: Server):
    case = sorted(server.cases)[0]
    status, _, body = _request(f"{server.url}/infer/{server.name}?image={case}&output=json", "POST")
    assert status == 200, (body[:2000], server.log())
    res = json.loads(body)
    assert res["label_names"] == {"lesion": 1}, res


def test_infer_unknown_image_is_an_error(server: Server):
    status, _, body = _request(f"{server.url}/infer/{server.name}?image=no_such_case&output=image", "POST")
    assert status >= 400, body[:500]


def test_train_writes_a_checkpoint(server: Server):
    models = server.bundle_dir / "models"
    before = {p.name: p.stat().st_mtime_ns for p in models.glob("*.pt")}
    start = time.monotonic()
    status, _, body = _request(
        f"{server.url}/train/{server.name}?run_sync=true",
        "POST",
        {"max_epochs": 1, "val_split": 0.25, "device": "cpu", "multi_gpu": False},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert status == 200, (body[:2000], server.log())
    print(f"{server.name}: /train/ with max_epochs 1 took {time.monotonic() - start:.0f} s", file=sys.stderr)
    after = {p.name: p.stat().st_mtime_ns for p in models.glob("*.pt")}
    written = sorted(n for n, t in after.items() if before.get(n) != t)
    # model.pt: the best model by validation Dice (on the val_split part); checkpoint.pt: the final state;
    # SemiSeg-CAW's default stage "all" also pre-trains ClassElevateSeg first (class_elevate.pt)
    extra = {"class_elevate.pt"} if server.name.startswith("semiseg_caw") else set()
    assert {"checkpoint.pt", "model.pt"} <= set(written) <= {"checkpoint.pt", "model.pt"} | extra, (before, after, server.log())
    import torch

    ckpt = torch.load(models / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["trainer"]["max_epochs"] == 1 and ckpt["trainer"]["iteration"] > 0, ckpt["trainer"]
    assert set(ckpt) >= {"model", "optimizer", "lr_scheduler", "trainer"}


def test_package_imports_with_numpy1_and_pydicom2(monailabel_venv):
    """Every usseg_monai module imports in the MONAI Label environment (numpy 1.26, pydicom 2.4.4)."""
    code = (
        "import importlib, json, pkgutil, numpy, pydicom, usseg_monai\n"
        "bad = {}\n"
        "for m in pkgutil.walk_packages(usseg_monai.__path__, 'usseg_monai.'):\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except Exception as e:\n"
        "        bad[m.name] = repr(e)\n"
        "print(json.dumps({'numpy': numpy.__version__, 'pydicom': pydicom.__version__,\n"
        "                  'file': usseg_monai.__file__, 'failed': bad}))\n"
    )
    r = subprocess.run(
        [str(monailabel_venv / "bin" / "python"), "-c", code], env=_env(), capture_output=True, text=True,
        timeout=300, cwd=monailabel_venv,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["numpy"].startswith("1.26."), res["numpy"]
    assert res["pydicom"] == "2.4.4", res["pydicom"]
    # the editable install points at this checkout
    assert Path(res["file"]).resolve().is_relative_to(REPO_ROOT.resolve()), res["file"]
    assert res["failed"] == {}, res["failed"]
