"""Integration: every bundle in ``bundles/`` serves in a real MONAI Label 0.8.5 server (issues 5 and 18).

For each bundle (parametrised over the folders of ``bundles/``, so a new bundle is covered the day it lands):

1. the MONAI Label environment is built by ``scripts/monailabel_env.sh`` when missing (a one-off of several
   minutes, outside the checkout, keyed by ``requirements-monailabel.txt``) and reused otherwise;
2. the project's app (``monailabel_app/``) is copied to a temporary folder, the bundle is copied into its
   ``model/`` folder and trained briefly there with ``python -m monai.bundle run`` from that environment (so it
   also runs with numpy 1.26 and pydicom 2.4.4), on a tiny synthetic dataset whose images form the studies
   folder (2D PNG or 3D NIfTI) and whose masks are its final labels;
3. ``monailabel start_server`` runs on 127.0.0.1 with a free port and ``--conf models <bundle>``; it is stopped
   (its whole process group) whatever happens;
4. ``/info/`` lists the model and trainer, ``/infer/<bundle>?image=<id>`` returns a uint8 0/1 mask of the
   image's shape that overlaps the lesion, ``/train/<bundle>`` with ``max_epochs`` 1 writes a new checkpoint;
5. for the caliper-trained bundles, ``/infer/<bundle>_calipers`` with the calipers of the true mask (as clicks
   and as a calipers JSON) returns the mask between their conservative and radical labels and the lesion's
   measurements, and bad calipers get HTTP 422 with the reason while the server goes on serving.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bundle_utils import REPO_ROOT, bundle_dirs, bundle_spatial_dims, make_tiny_dataset

from usseg_monai.bundle_paths import trains_from_calipers
from usseg_monai.data.io import load_png, load_volume
from usseg_monai.monailabel_client import APP_DIR as APP
from usseg_monai.monailabel_client import MonaiLabelServer, form_request, request

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
ENV_SCRIPT = REPO_ROOT / "scripts" / "monailabel_env.sh"
# the user's cache, read before tests/conftest.py points USSEG_MONAI_CACHE at a per-session temporary folder:
# the environment is a one-off build that later sessions reuse
USER_CACHE = Path(os.environ.get("USSEG_MONAI_CACHE", Path.home() / ".cache" / "usseg_monai")).expanduser()
# brief training before serving so that the model finds the lesion: epochs, learning rate; per bundle where the
# default does not do. Measured with the bundle's own inference on the first two training volumes (2026-12-04,
# bundle seed 123, and seed 0 in brackets): the 3D UNet at 10 epochs / 0.003
# under-segmented (Dice 0.32, 0.52), at 20 epochs / 0.01 it reached 0.96-0.98 (0.93-0.95 with seed 0); CRII-Net 3D
# at 10 epochs / 0.003 gave 0.13-0.16, at 20 epochs / 0.003 0.89-0.92 (0.64-0.71 with seed 0; at 0.01 seed 0 one
# volume fell to 0.0); CRBNet 3D at 0.01 fell to 0.19; at 10 epochs / 0.003 it found the lesion until the random
# transforms were reseeded (#20, the plain-tensor nesting): then case_000 came back empty, so it trains 20 epochs
PRETRAIN_DEFAULT = {2: (10, 0.003), 3: (10, 0.003)}
PRETRAIN = {"unet_us_3d_segmentation": (20, 0.01), "crii_net_us_3d_segmentation": (20, 0.003),
            "crbnet_us_3d_segmentation": (20, 0.003)}
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


class Server:
    """A running ``monailabel start_server`` and the folders it serves."""

    def __init__(self, venv: Path, root: Path, bundle: Path):
        self.name = bundle.name
        self.dims = bundle_spatial_dims(bundle)
        self.caliper_trained = trains_from_calipers(bundle)
        self.ext = ".png" if self.dims == 2 else ".nii.gz"
        self.app = root / "app"  # a copy of the project's app: the server writes into its app folder
        shutil.copytree(APP, self.app, ignore=shutil.ignore_patterns("model", "__pycache__"))
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
        self.server: MonaiLabelServer | None = None
        self.url = ""

    def pretrain(self) -> float:
        """Train the copied bundle briefly with ``python -m monai.bundle run`` from the MONAI Label env."""
        epochs, lr = PRETRAIN.get(self.name, PRETRAIN_DEFAULT[self.dims])
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
        conf = {"models": self.name, "bundles_dir": str(REPO_ROOT / "bundles"),
                "outputs_dir": str(self.app / "no_outputs"), "preload": "false"}
        self.server = MonaiLabelServer(self.venv, self.app, self.studies, conf, self.log_path, env=_env())
        self.url = self.server.url
        self.server.start(timeout=SERVER_START_TIMEOUT_S)

    @property
    def proc(self):
        return self.server.proc if self.server is not None else None

    def log(self, tail: int = 8000) -> str:
        return self.server.log(tail) if self.server is not None else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


# each bundle's server is a unit of work of its own on the xdist workers (tests/conftest.py: xdist_scope)
@pytest.fixture(scope="module", params=BUNDLES, ids=[b.name for b in BUNDLES])
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
    status, _, body = request(server.url + "/info/")
    assert status == 200, body[:2000]
    info = json.loads(body)
    assert server.name in info["models"], (sorted(info["models"]), server.log())
    model = info["models"][server.name]
    assert model["type"] == "segmentation"
    assert model["dimension"] == server.dims
    assert model["labels"] == {"lesion": 1}
    assert server.name in info["trainers"]
    status, _, body = request(server.url + "/datastore/?output=stats")
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
        status, headers, body = request(f"{server.url}/infer/{server.name}?image={case}&output=image", "POST")
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
    status, _, body = request(f"{server.url}/infer/{server.name}?image={case}&output=json", "POST")
    assert status == 200, (body[:2000], server.log())
    res = json.loads(body)
    assert res["label_names"] == {"lesion": 1}, res


def test_infer_unknown_image_is_an_error(server: Server):
    status, _, body = request(f"{server.url}/infer/{server.name}?image=no_such_case&output=image", "POST")
    assert status >= 400, body[:500]


def _truth_calipers(server: Server, case: str):
    """The calipers of a case's true mask (as ``usseg prepare`` derives them) and the mask itself (x, y[, z])."""
    from usseg_monai.calipers import calipers_from_mask

    truth_path = server.cases[case]
    if server.dims == 2:
        truth, spacing = load_png(truth_path) > 0, (1.0, 1.0)  # a PNG has no spacing: pixel units
    else:
        arr, geometry = load_volume(truth_path)
        truth, spacing = np.asarray(arr) > 0, tuple(float(v) for v in geometry["spacing"])
    return calipers_from_mask(truth, spacing), truth


def _requires_calipers(server: Server) -> None:
    if not server.caliper_trained:
        pytest.skip(f"{server.name} does not train from calipers: no caliper-guided task")


def test_caliper_guided_task_is_listed_for_caliper_bundles(server: Server):
    status, _, body = request(server.url + "/info/")
    models = json.loads(body)["models"]
    assert (f"{server.name}_calipers" in models) == server.caliper_trained, sorted(models)
    if server.caliper_trained:
        task = models[f"{server.name}_calipers"]
        assert task["type"] == "deepgrow" and task["dimension"] == server.dims, task


def test_caliper_guided_mask_lies_between_the_labels(server: Server, tmp_path):
    """Clicks (long axis first) and the same calipers as JSON give the same mask, inside the radical label and
    containing the conservative one, with the lesion's measurements in the label JSON."""
    _requires_calipers(server)
    from usseg_monai.calipers import rasterize_calipers

    case = sorted(server.cases)[0]
    annotation, truth = _truth_calipers(server, case)
    points = annotation.lesions[0].segments.reshape(-1, server.dims).tolist()
    url = f"{server.url}/infer/{server.name}_calipers?image={case}"
    masks = []
    for params in ({"foreground": points}, {"calipers": annotation.to_dict()}):
        status, _, body = form_request(url + "&output=image", params)
        assert status == 200, (params, body[:2000], server.log())
        out = tmp_path / f"{case}_{len(masks)}{server.ext}"
        out.write_bytes(body)
        masks.append(_load_mask(out, server.dims) > 0)
    assert np.array_equal(masks[0], masks[1])
    labels = rasterize_calipers(annotation)
    cons, rad = labels["conservative_label"], labels["radical_label"]
    mask = masks[0]
    assert mask.shape == truth.shape and cons.any()
    assert not (mask & ~rad).any(), "lesion voxels outside the radical label"
    assert (mask & cons).sum() == cons.sum(), "conservative voxels missing from the mask"
    dice = 2.0 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.5, dice
    status, _, body = form_request(url + "&output=json", {"foreground": points})
    assert status == 200, body[:2000]
    res = json.loads(body)
    assert res["unit"] == ("px" if server.dims == 2 else "mm"), res
    drawn = res["calipers"][0]
    assert drawn["long_axis_mm"] == pytest.approx(annotation.lesions[0].lengths_mm(annotation.spacing)[0], rel=1e-6)
    lesion = res["measurements"][0]
    assert {"long_axis_mm", "short_axis_mm", "aspect_ratio", "taller_than_wide"} <= set(lesion), lesion
    # the mask lies inside the radical ellipse of the drawn axes, so its long axis is at most ~the drawn one
    assert 0.5 * drawn["long_axis_mm"] <= lesion["long_axis_mm"] <= 1.2 * drawn["long_axis_mm"], (lesion, drawn)


#: bad calipers (a change of the true clicks) and what the 422's detail says
BAD_CALIPERS = {
    "three_points": (lambda p: p[:3], "needs {n} points"),
    "zero_length": (lambda p: [p[0], p[0]] + p[2:], "zero length"),
    "nan": (lambda p: [p[0], [float("nan")] * len(p[0])] + p[2:], "not finite"),
    "outside": (lambda p: [p[0], [1e4] * len(p[0])] + p[2:], "outside the image"),
    "strings": (lambda p: [p[0], [str(v) for v in p[1]]] + p[2:], "must be {d} numbers"),
    "none": (lambda p: [], "needs calipers"),
}


def test_caliper_guided_bad_calipers_are_a_422(server: Server):
    _requires_calipers(server)
    case = sorted(server.cases)[0]
    annotation, _ = _truth_calipers(server, case)
    points = annotation.lesions[0].segments.reshape(-1, server.dims).tolist()
    url = f"{server.url}/infer/{server.name}_calipers?image={case}&output=json"
    for name, (change, message) in BAD_CALIPERS.items():
        status, _, body = form_request(url, {"foreground": change(points)})
        assert status == 422, (name, status, body[:2000])
        detail = json.loads(body)["detail"]
        assert message.format(n=2 * server.dims, d=server.dims) in detail, (name, detail)
        status, _, body = form_request(url, {"foreground": points})  # and the server goes on serving
        assert status == 200, (name, body[:2000], server.log())


def test_train_writes_a_checkpoint(server: Server):
    models = server.bundle_dir / "models"
    before = {p.name: p.stat().st_mtime_ns for p in models.glob("*.pt")}
    start = time.monotonic()
    status, _, body = request(
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
