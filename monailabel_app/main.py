"""The MONAI Label app of usseg-monai: every bundle for auto-segmentation and training, plus caliper-guided
segmentation for the bundles trained from calipers (docs/monailabel.md).

Start it from the MONAI Label environment (``scripts/monailabel_env.sh``)::

    monailabel start_server --app monailabel_app --studies ~/studies --conf models all --conf sam2 false

Configuration (``--conf KEY VALUE``):

- ``models``: comma-separated bundle names, or ``all`` (every folder of ``bundles_dir``).
- ``bundles_dir``: where the bundles' configs come from (default: this checkout's ``bundles/``).
- ``outputs_dir``: where trained models are taken from when the app's own copy has none (default: this
  checkout's ``outputs/``, where the bundle READMEs and ``scripts/main.sh`` train: ``<outputs_dir>/<bundle>/models/
  model.pt``).
- ``skip_trainers``: ``true`` serves inference only.

Each served bundle lives in ``<app>/model/<bundle>/`` (as in MONAI Label's ``monaibundle`` sample app): its
``configs/`` are refreshed from ``bundles_dir`` at every start, its ``models/`` kept (training writes there).

Tasks per bundle: ``<bundle>`` (auto-segmentation, MONAI Label's ``BundleInferTask``) and the trainer
``<bundle>`` (``BundleTrainTask``); for every bundle whose training rasterises caliper pseudo-labels
(``CaliperPseudoLabelsd`` in its ``train.json``: CRBNet, 2D and 3D) also ``<bundle>_calipers``, the
caliper-guided task of :class:`CaliperGuidedInferTask`.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import monailabel
from fastapi import HTTPException
from monai.transforms import EnsureChannelFirstd, SaveImaged
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.utils.others.generic import strtobool

from usseg_monai.bundle_paths import trains_from_calipers
from usseg_monai.calipers import measure_calipers
from usseg_monai.data.io import DatasetError, atomic_write_json
from usseg_monai.utils.errors import find_in_chain
from usseg_monai.transforms import CalipersFromPointsd, ConstrainToCalipersd, MeasureLesiond
from usseg_monai.transforms.outputs import SaveMeasurementsd, SaveOverlayd

logger = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[1]
#: request fields the caliper-guided task reads its calipers from, in this order
CALIPER_FIELDS = ("calipers", "foreground")
_PLAIN_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def prepare_bundles(app_dir: Path, names: str, bundles_dir: Path, outputs_dir: Path) -> dict[str, Path]:
    """The app's copy of each requested bundle, ``<app_dir>/model/<name>``: configs refreshed, a trained model.

    Raises:
        ValueError: no bundle requested, or a name that is not a bundle folder of ``bundles_dir``.
    """
    if not bundles_dir.is_dir():
        raise ValueError(f"--conf bundles_dir: {bundles_dir} is not a folder (the bundles' parent folder, e.g. bundles/)")
    available = sorted(p.name for p in bundles_dir.iterdir() if (p / "configs" / "inference.json").is_file())
    wanted = available if names.strip() == "all" else [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise ValueError(f"--conf models: name one or more bundles of {bundles_dir} or 'all' ({', '.join(available)})")
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ValueError(f"--conf models: {', '.join(unknown)} not among the bundles of {bundles_dir}: {', '.join(available)}")
    out: dict[str, Path] = {}
    for name in wanted:
        src, dst = bundles_dir / name, app_dir / "model" / name
        for part in ("configs", "docs"):
            if (src / part).is_dir():
                shutil.copytree(src / part, dst / part, dirs_exist_ok=True)
        model = dst / "models" / "model.pt"
        trained = outputs_dir / name / "models" / "model.pt"
        if not model.is_file() and trained.is_file():
            model.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(trained, model.with_suffix(".pt.tmp"))
            model.with_suffix(".pt.tmp").replace(model)
            logger.info("%s: trained model taken from %s", name, trained)
        if not model.is_file():
            logger.warning("%s: no trained model (%s or %s); train it first (see its README)", name, model, trained)
        out[name] = dst
    return out


def _caliper_points(request: dict[str, Any], ndim: int) -> tuple[str, Any]:
    """The calipers of a request: ``calipers`` (a calipers JSON object or the endpoints in order) or MONAI Label's
    ``foreground`` clicks (the endpoints in order, long axis first). Clicks on a 2D image may carry a third
    coordinate 0 (3D viewers send one for every click): it is dropped."""
    for field in CALIPER_FIELDS:
        value = request.get(field)
        if value is None or (isinstance(value, (list, str)) and len(value) == 0):
            continue
        if ndim == 2 and isinstance(value, list) and all(isinstance(p, list) and len(p) == 3 for p in value):
            if all(p[2] == 0 for p in value):
                value = [p[:2] for p in value]
        return field, value
    raise HTTPException(
        status_code=422,
        detail=f"caliper-guided segmentation needs calipers: 'foreground' clicks or 'calipers' in the request params "
        f"({2 * ndim} points in order: long axis start, end, short axis start, end"
        + (", third axis start, end" if ndim == 3 else "")
        + "; or a usseg-calipers JSON object)",
    )


def _dataset_error(exc: BaseException) -> DatasetError | None:
    """The DatasetError behind ``exc`` (MONAI's Compose wraps a transform's error in a RuntimeError)."""
    return find_in_chain(exc, DatasetError)


class CaliperGuidedInferTask(BundleInferTask):
    """Caliper-guided segmentation with a caliper-trained bundle (the project's MONAI Label feature).

    The request carries the calipers a reader drew: MONAI Label ``foreground`` clicks (2D: four points, long axis
    start and end, then short axis start and end; 3D: six, then the third axis), or ``calipers`` in the request
    params (the same list, or a usseg-calipers JSON object). Points are voxel indices ``(x, y[, z])`` of the image
    as MONAI loads it. The server builds the annotation on the image's grid with its spacing
    (:class:`~usseg_monai.transforms.CalipersFromPointsd`), runs the bundle's own inference and returns the mask
    constrained to conservative <= mask <= radical (:class:`~usseg_monai.transforms.ConstrainToCalipersd`, the
    same rule as ``usseg infer --calipers``). The label JSON carries ``measurements`` (per lesion: axes, area or
    volume, aspect ratio, taller-than-wide; ``unit`` ``mm`` when the image has a spacing, else ``px``) and
    ``calipers`` (the drawn axes' lengths). Bad calipers (number of points, non-numbers, NaN, zero length,
    outside the image, not perpendicular) answer HTTP 422 with the reason; the server goes on serving.
    """

    POINTS_KEY = "caliper_points"
    SOURCE_KEY = "caliper_source"

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        # the bundle's CSV / overlay writers are for batch inference; MONAI Label writes the mask itself
        super().__init__(path, conf, type=InferType.DEEPGROW,
                         post_filter=[SaveImaged, SaveMeasurementsd, SaveOverlayd], **kwargs)
        self.description = f"{self.description} Caliper-guided: mask between the calipers' conservative and radical labels."

    def pre_transforms(self, data: Any = None) -> list:
        pre = list(super().pre_transforms(data))
        at = next((i for i, t in enumerate(pre) if isinstance(t, EnsureChannelFirstd)), None)
        if at is None:
            raise RuntimeError(f"{self.bundle_path}: the inference preprocessing has no EnsureChannelFirstd")
        # on the loaded image's own grid and spacing, before any resizing
        source = f"request field {(data or {}).get(self.SOURCE_KEY, 'foreground')!r}"
        pre.insert(at + 1, CalipersFromPointsd(self.key_image, points_key=self.POINTS_KEY, output_key="calipers",
                                               source=source))
        return pre

    def post_transforms(self, data: Any = None) -> list:
        post = list(super().post_transforms(data))
        at = next((i for i, t in enumerate(post) if isinstance(t, ConstrainToCalipersd)), None)
        if at is None:
            raise RuntimeError(f"{self.bundle_path}: the inference postprocessing has no ConstrainToCalipersd")
        post[at] = ConstrainToCalipersd(self.key_pred, calipers_key="calipers", enabled=True)
        post.insert(at + 1, MeasureLesiond(self.key_pred, output_postfix="measurements"))
        return post

    def writer(self, data: dict[str, Any], extension: Any = None, dtype: Any = None) -> tuple[Any, dict]:
        result_file, result_json = super().writer(data, extension, dtype)
        annotation = data["calipers"]
        image = str(data.get("image_path") or "")
        plain = image.lower().endswith(_PLAIN_IMAGE_SUFFIXES) and all(s == 1.0 for s in annotation.spacing)
        result_json["unit"] = "px" if plain else "mm"
        result_json["spacing"] = list(annotation.spacing)
        result_json["measurements"] = data.get(f"{self.key_pred}_measurements", [])
        result_json["calipers"] = measure_calipers(annotation)
        return result_file, result_json

    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[Any, dict]:
        req = dict(request)
        req[self.SOURCE_KEY], req[self.POINTS_KEY] = _caliper_points(req, self.dimension)
        try:
            return super().__call__(req, callbacks)
        except Exception as e:
            err = _dataset_error(e)
            if err is None:
                raise
            raise HTTPException(status_code=422, detail=f"bad calipers: {err}") from e


class DatastoreTrainTask(BundleTrainTask):
    """MONAI Label's ``BundleTrainTask`` training on the datastore's images only.

    MONAI Label overrides ``train#dataset#data`` (and ``validate#dataset#data``) with the datastore's items, but the
    bundles also read their datalist file through other keys (``train_datalist`` / ``val_datalist`` checked in
    ``initialize``, the semi-supervised bundles' ``train_sections``); left at their defaults those would read the
    phantom. So the request's items are written to ``<bundle>/monailabel/datalist.json`` (training: the train
    split; validation: the validation split, or the training items when the request has none, since every bundle
    validates) and ``data_list_file_path`` points at it; the ``create_phantom`` step is off. A bundle that trains
    from another key than the mask (CRBNet: ``train_label_key`` ``calipers``) gets the items as ``train_datalist``
    directly: the datastore has masks, from which its chain derives the calipers (``LoadCalipersd(mask_key=...)``).
    A bundle with a class-only stream (SemiSeg-CAW) trains without it when the datastore items carry no class."""

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        train = list(overrides.get(self.const.key_train_dataset_data()) or [])
        val = list(overrides.get(self.const.key_validate_dataset_data()) or []) or train
        overrides["create_phantom"] = False
        overrides["data_list_file_path"] = str(write_datastore_datalist(Path(self.bundle_path) / "monailabel", train, val))
        if self.bundle_config.get("train_label_key", "label") != "label" and "train_datalist" in self.bundle_config:
            overrides["train_datalist"] = train
        class_key = self.bundle_config.get("class_key", "class_index")
        if "class_only" in self.bundle_config and not any(class_key in item for item in train):
            overrides["class_only"] = 0  # SemiSeg-CAW: no class labels in the datastore, so no class-only stream
        return overrides


def write_datastore_datalist(folder: Path, train: list[dict[str, Any]], val: list[dict[str, Any]]) -> Path:
    """Write MONAI Label's train / validation items (absolute paths) as ``folder/datalist.json`` (atomically), with
    the folder holding all their files as ``allowed_roots`` (the path rule); returns its path."""
    paths = [str(v) for item in train + val for k, v in item.items() if k in ("image", "label") and isinstance(v, str)]
    if not paths:
        raise DatasetError("MONAI Label training: the datastore has no labeled image to train on")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(folder / "datalist.json", {"training": train, "validation": val, "allowed_roots": [root]})


class UltrasoundApp(MONAILabelApp):
    """usseg-monai's bundles in MONAI Label (see the module docstring for ``--conf`` keys)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        bundles_dir = Path(conf.get("bundles_dir", CHECKOUT / "bundles")).expanduser().resolve()
        outputs_dir = Path(conf.get("outputs_dir", CHECKOUT / "outputs")).expanduser().resolve()
        self.models = prepare_bundles(Path(app_dir), conf.get("models", ""), bundles_dir, outputs_dir)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="usseg-monai ultrasound lesion segmentation",
            description="usseg-monai bundles: auto-segmentation, training, caliper-guided segmentation",
            version=monailabel.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, path in self.models.items():
            task = BundleInferTask(str(path), self.conf)
            if not task.is_valid():
                continue
            infers[name] = task
            if trains_from_calipers(path):
                infers[f"{name}_calipers"] = CaliperGuidedInferTask(str(path), self.conf)
        logger.info("+++ inference tasks: %s", sorted(infers))
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        trainers: dict[str, TrainTask] = {}
        for name, path in self.models.items():
            task = DatastoreTrainTask(str(path), self.conf)
            if task and task.is_valid():
                trainers[name] = task
        return trainers

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}


__all__ = ["CaliperGuidedInferTask", "DatastoreTrainTask", "UltrasoundApp", "prepare_bundles"]
