"""Synthetic ultrasound phantom: determinism, physics (speckle, attenuation, posterior features), lesion
shape rules, the prepared dataset and the concurrency-safe cache."""

from __future__ import annotations

import json
import math
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from usseg_monai.calipers import calipers_from_mask, load_calipers
from usseg_monai.data import phantom
from usseg_monai.data.phantom import dataset as phantom_dataset
from usseg_monai.data.io import DatasetError, cache_dir, load_datalist
from usseg_monai.data.phantom import (
    DEFAULT_IMAGE_SIZE,
    PHANTOM_CLASSES,
    RAYLEIGH_SNR,
    default_phantom_spacing,
    ensure_phantom_dataset,
    generate_phantom,
    log_compress,
    prepare_phantom,
    rayleigh_speckle,
)

SHAPES = {2: (128, 128), 3: (64, 64, 32)}


def _extent_px(mask: np.ndarray, axis: int) -> tuple[int, int]:
    """First and last index along ``axis`` where the mask is set."""
    other = tuple(a for a in range(mask.ndim) if a != axis)
    idx = np.nonzero(mask.any(axis=other))[0]
    return int(idx[0]), int(idx[-1])


def _ring_ratio(image: np.ndarray, mask: np.ndarray, width: int = 4) -> float:
    """Mean intensity inside the mask over the mean in a ring ``width`` px wide around it."""
    m = mask.astype(bool)
    ring = ndimage.binary_dilation(m, iterations=width) & ~m
    return float(image[m].mean() / image[ring].mean())


def _posterior_ratio(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean intensity just below the lesion (central half of its width, along the beam = axis 1) over the
    mean at the same depths beside it (left and right along axis 0), within the lesion's central z range."""
    x0, x1 = _extent_px(mask, 0)
    y0, y1 = _extent_px(mask, 1)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    rows = slice(y1 + 2, min(image.shape[1], y1 + 2 + max(h // 2, 6)))
    img = image.astype(np.float64)
    if mask.ndim == 3:
        z0, z1 = _extent_px(mask, 2)
        d = z1 - z0 + 1
        img = img[..., z0 + d // 4 : z1 - d // 4 + 1]
    below = img[x0 + w // 4 : x1 - w // 4 + 1, rows].mean()
    side = np.r_[max(0, x0 - w) : max(0, x0 - 3), x1 + 4 : min(image.shape[0], x1 + 1 + w)]
    beside = img[side][:, rows].mean()
    return float(below / beside)


# ----------------------------------------------------------------------------------------------------
# generator


@pytest.mark.parametrize("dims", [2, 3])
def test_deterministic_per_seed_and_different_across_seeds(dims):
    a = generate_phantom(SHAPES[dims], class_name="malignant", seed=3)
    b = generate_phantom(SHAPES[dims], class_name="malignant", seed=3)
    c = generate_phantom(SHAPES[dims], class_name="malignant", seed=4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.params == b.params
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.mask, c.mask)
    assert a.params["lesion"]["centre_mm"] != c.params["lesion"]["centre_mm"]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("class_name", PHANTOM_CLASSES)
def test_shapes_dtypes_ranges_and_masks(dims, class_name):
    shape = SHAPES[dims]
    s = generate_phantom(shape, class_name=class_name, seed=1)
    assert s.image.shape == shape and s.mask.shape == shape
    assert s.image.dtype == np.uint8 and s.mask.dtype == np.uint8
    assert set(np.unique(s.mask)) <= {0, 1}
    assert s.class_name == class_name and s.envelope is None
    assert s.spacing == default_phantom_spacing(shape) and len(s.spacing) == dims
    # gray levels use most of the 8-bit range, without saturating the image
    assert s.image.min() < 40 and s.image.max() > 200 and 60 < s.image.mean() < 170
    json.dumps(s.params)  # JSON-able
    assert s.params["shape"] == list(shape) and s.params["spacing"] == list(s.spacing)
    if class_name == "normal":
        assert not s.mask.any() and s.params["lesion"] is None
    else:
        lesion = s.params["lesion"]
        assert s.mask.sum() == lesion["volume_px"] > 20
        # the recorded centre (pixels) lies in the mask's bounding box
        for ax in range(dims):
            lo, hi = _extent_px(s.mask, ax)
            assert lo <= lesion["centre_px"][ax] <= hi
        assert len(lesion["semi_axes_mm"]) == dims


def test_non_square_shape_keeps_x_y_order_and_skin_on_top():
    s = generate_phantom((96, 64), class_name="benign", seed=2, spacing=(0.15, 0.15))
    assert s.image.shape == (96, 64) and s.spacing == (0.15, 0.15)
    img = s.image.astype(float)
    # the bright epidermis line is at the top rows (small y = axis 1), not at the left columns
    assert img[:, :2].mean() > 1.3 * img[:, 8:16].mean()
    assert img[:, :2].mean() > 1.3 * img[:2, :].mean()


def test_default_spacing():
    assert default_phantom_spacing((128, 128)) == (0.2, 0.2)
    assert default_phantom_spacing((256, 200)) == (0.1, 0.1)
    assert default_phantom_spacing((64, 64, 32)) == (0.4, 0.4, 0.8)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("class_name", ["benign", "malignant"])
def test_lesion_is_hypoechoic(dims, class_name):
    for seed in range(4):
        s = generate_phantom(SHAPES[dims], class_name=class_name, seed=seed)
        assert _ring_ratio(s.image, s.mask) < 0.7, f"seed {seed}"


def test_rayleigh_speckle_snr_uncorrelated_and_correlated():
    for corr in (None, (2.0, 0.8)):
        r = rayleigh_speckle((256, 256), seed=5, correlation_px=corr)
        assert r.dtype == np.float32 and r.min() >= 0
        assert float(np.mean(r.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)  # unit power
        assert r.mean() / r.std() == pytest.approx(RAYLEIGH_SNR, rel=0.02)
    # correlation: neighbouring pixels are correlated laterally more than axially when sigma_x > sigma_y
    r = rayleigh_speckle((256, 256), seed=5, correlation_px=(2.0, 0.8)).astype(np.float64)
    r -= r.mean()
    lat = np.mean(r[1:] * r[:-1]) / r.var()
    ax = np.mean(r[:, 1:] * r[:, :-1]) / r.var()
    assert lat > ax + 0.1 and lat > 0.6
    with pytest.raises(ValueError, match="correlation_px"):
        rayleigh_speckle((8, 8), correlation_px=(1.0,))


@pytest.mark.parametrize("corr", [None, (0.4, 0.15)])
def test_envelope_of_homogeneous_tissue_is_rayleigh(corr):
    s = generate_phantom(
        (128, 128), class_name="normal", seed=0, anatomy=False, compounding=1, residual_attenuation_db_per_cm=0.0,
        speckle_correlation_mm=corr, return_envelope=True,
    )
    env = s.envelope.astype(np.float64)
    assert env.shape == (128, 128) and s.envelope.dtype == np.float32
    assert env.mean() / env.std() == pytest.approx(RAYLEIGH_SNR, rel=0.03)
    # compounding several looks (intensity average) makes the speckle smoother than Rayleigh
    c = generate_phantom((128, 128), class_name="normal", seed=0, anatomy=False, compounding=4,
                         residual_attenuation_db_per_cm=0.0, return_envelope=True).envelope
    assert c.mean() / c.std() > 1.6 * RAYLEIGH_SNR


def test_log_compression():
    env = np.array([1e-6, 10 ** (-30 / 20), 1.0, 10 ** (25 / 20), 1e3])
    gray = log_compress(env, dynamic_range_db=55, gain_db=30)
    np.testing.assert_allclose(gray, [0.0, 0.0, 255 * 30 / 55, 255.0, 255.0], atol=1e-6)


def test_depth_attenuation():
    # homogeneous tissue: the envelope falls exponentially with depth at the residual rate
    alpha = 4.0  # dB / cm
    s = generate_phantom((128, 128), class_name="normal", seed=0, anatomy=False, residual_attenuation_db_per_cm=alpha,
                         return_envelope=True, noise_floor_db=-80)
    env = s.envelope.astype(np.float64)
    shallow, deep = env[:, 8:24].mean(), env[:, 104:120].mean()
    dy_cm = 96 * s.spacing[1] / 10
    assert 20 * math.log10(shallow / deep) == pytest.approx(alpha * dy_cm, abs=0.6)
    assert s.image[:, 104:120].mean() < s.image[:, 8:24].mean() - 10
    # with anatomy: the deepest background is darker than the glandular tissue above it
    for seed in range(5):
        n = generate_phantom((128, 128), class_name="normal", seed=seed)
        layers, sy = n.params["layers"], n.spacing[1]
        gland = n.image[:, int(layers["fat_bottom_mm"] / sy) + 5 : int(layers["muscle_top_mm"] / sy) - 5]
        assert n.image[:, -12:].mean() < 0.85 * gland.mean(), f"seed {seed}"


@pytest.mark.parametrize("dims,seeds", [(2, range(10)), (3, range(3))])
def test_malignant_taller_than_wide_benign_wider_than_tall(dims, seeds):
    for seed in seeds:
        for class_name, taller in (("malignant", True), ("benign", False)):
            s = generate_phantom(SHAPES[dims], class_name=class_name, seed=seed)
            x0, x1 = _extent_px(s.mask, 0)
            y0, y1 = _extent_px(s.mask, 1)
            width, depth = (x1 - x0 + 1) * s.spacing[0], (y1 - y0 + 1) * s.spacing[1]
            assert (depth > width) == taller, f"{class_name} seed {seed}: width {width} mm, depth {depth} mm"
            assert s.params["lesion"]["taller_than_wide"] == taller
            assert s.params["lesion"]["extent_mm"][:2] == pytest.approx([width, depth])


def test_margins_differ_between_classes():
    """Malignant margins are irregular: the mask's boundary is longer relative to its area (lower
    isoperimetric quotient 4 pi A / P^2) than the smooth benign ovals."""

    def compactness(mask):
        m = mask.astype(bool)
        perimeter = (m & ~ndimage.binary_erosion(m)).sum()
        return 4 * math.pi * m.sum() / perimeter**2

    benign = [compactness(generate_phantom((128, 128), class_name="benign", seed=s).mask) for s in range(6)]
    malignant = [compactness(generate_phantom((128, 128), class_name="malignant", seed=s).mask) for s in range(6)]
    assert np.median(malignant) < 0.85 * np.median(benign)


@pytest.mark.parametrize("dims", [2, 3])
def test_posterior_enhancement_and_shadowing(dims):
    # the physics alone (homogeneous tissue): every seed
    for seed in range(4):
        b = generate_phantom(SHAPES[dims], class_name="benign", seed=seed, anatomy=False)
        m = generate_phantom(SHAPES[dims], class_name="malignant", seed=seed, anatomy=False)
        assert b.params["lesion"]["posterior"] == "enhancement" and m.params["lesion"]["posterior"] == "shadow"
        assert _posterior_ratio(b.image, b.mask) > 1.15, f"benign seed {seed}"
        assert _posterior_ratio(m.image, m.mask) < 0.8, f"malignant seed {seed}"
    # with the layered anatomy: on average over seeds
    ratios = {}
    for class_name in ("benign", "malignant"):
        samples = [generate_phantom(SHAPES[dims], class_name=class_name, seed=k) for k in range(6)]
        ratios[class_name] = [_posterior_ratio(s.image, s.mask) for s in samples]
    benign, malignant = ratios["benign"], ratios["malignant"]
    assert np.exp(np.mean(np.log(benign))) > 1.2
    assert np.exp(np.mean(np.log(malignant))) < 0.6
    # the option switches the feature off
    n = generate_phantom(SHAPES[dims], class_name="malignant", seed=0, anatomy=False, posterior_db=0.0)
    assert n.params["lesion"]["posterior"] == "none"
    assert _posterior_ratio(n.image, n.mask) == pytest.approx(1.0, abs=0.12)


def test_sector_probe():
    s = generate_phantom((128, 128), class_name="benign", seed=2, probe="sector", sector_angle_deg=60)
    lin = generate_phantom((128, 128), class_name="benign", seed=2)
    assert s.image.shape == (128, 128) and s.mask.any()
    # top corners lie outside the fan: black; the centre line is imaged
    assert s.image[:10, :10].max() == 0 and s.image[-10:, :10].max() == 0
    assert s.image[60:68, 20:100].mean() > 60
    assert not np.array_equal(s.image, lin.image)
    # the lesion lies inside the fan
    assert (s.image[ndimage.binary_dilation(s.mask, iterations=2)] > 0).all()
    v = generate_phantom((48, 48, 12), class_name="malignant", seed=0, probe="sector")
    assert v.image.shape == (48, 48, 12) and v.mask.any() and v.image[:4, :4, :].max() == 0


def test_timing():
    """Generation speed (lenient bounds for a shared 2-core machine; typical: ~10 ms 2D, ~80 ms 3D)."""
    generate_phantom((128, 128), seed=0)
    t2 = []
    for k in range(5):
        t = time.perf_counter()
        generate_phantom((128, 128), class_name="malignant", seed=k)
        t2.append(time.perf_counter() - t)
    t = time.perf_counter()
    generate_phantom((64, 64, 32), class_name="malignant", seed=0)
    t3 = time.perf_counter() - t
    assert np.median(t2) < 0.15 and t3 < 1.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown phantom class 'cyst'"):
        generate_phantom((64, 64), class_name="cyst")
    with pytest.raises(ValueError, match=r"2 or 3 integers"):
        generate_phantom((32, 32, 32, 32))
    with pytest.raises(ValueError, match=r"2 or 3 integers"):
        generate_phantom((64,))
    with pytest.raises(ValueError, match=r"2 or 3 integers"):
        generate_phantom((64.5, 64))
    with pytest.raises(ValueError, match="at least 16"):
        generate_phantom((8, 64))
    with pytest.raises(ValueError, match="spacing must be 2 positive"):
        generate_phantom((64, 64), spacing=(0.1, 0.0))
    with pytest.raises(ValueError, match="spacing must be 3 positive"):
        generate_phantom((32, 32, 16), spacing=(0.1, 0.1))
    with pytest.raises(ValueError, match=r"unknown phantom option\(s\) \['frequency'\]"):
        generate_phantom((64, 64), frequency=7.5)
    with pytest.raises(ValueError, match="option probe"):
        generate_phantom((64, 64), probe="convex")
    with pytest.raises(ValueError, match="option compounding"):
        generate_phantom((64, 64), compounding=0)
    with pytest.raises(ValueError, match="option speckle_correlation_mm"):
        generate_phantom((32, 32, 16), speckle_correlation_mm=(0.3, 0.1))


# ----------------------------------------------------------------------------------------------------
# prepared dataset


def test_class_counts():
    assert phantom_dataset._class_counts(64, (0.45, 0.35, 0.2)) == [29, 22, 13]
    assert phantom_dataset._class_counts(5, (1, 1, 1)) == [2, 2, 1]
    assert phantom_dataset._class_counts(3, (1, 0, 0)) == [3, 0, 0]
    with pytest.raises(ValueError, match="class_fractions"):
        phantom_dataset._class_counts(4, (0.5, 0.5))
    with pytest.raises(ValueError, match="class_fractions"):
        phantom_dataset._class_counts(4, (0.5, -0.1, 0.6))


def test_prepare_phantom_2d_reads_with_monai(tmp_path):
    from monai.transforms import LoadImaged

    out = tmp_path / "ph2"
    summary = prepare_phantom(out, n_images=8, image_size=(48, 40), seed=1, val_fraction=0.25)
    dl = load_datalist(out / "datalist.json")
    assert dl["classes"] == list(PHANTOM_CLASSES) and dl["spatial_dims"] == 2
    items = dl["training"] + dl["validation"] + dl["test"]
    assert len(items) == 8 and summary["n_items"] == 8 and len(dl["validation"]) >= 1
    assert summary["per_class"] == {"benign": 4, "malignant": 3, "normal": 1}
    assert summary["empty_masks"] == 1 and summary["n_with_spacing"] == 8
    params = json.loads((out / "phantom_params.json").read_text())
    loader = LoadImaged(keys=["image", "label"], image_only=True)
    for it in items:
        assert it["spacing"] == pytest.approx([25.6 / 48] * 2)
        assert it["class_index"] == PHANTOM_CLASSES.index(it["class"])
        d = loader({"image": str(out / it["image"]), "label": str(out / it["label"])})
        assert d["image"].shape == d["label"].shape == (48, 40)
        name = Path(it["image"]).name[: -len(".png")]
        assert params[name]["class_name"] == it["class"]
        # the stored seed regenerates the item exactly
        regen = generate_phantom((48, 40), class_name=it["class"], seed=it["phantom_seed"])
        assert np.array_equal(np.asarray(d["image"]), regen.image)
        assert np.array_equal(np.asarray(d["label"]) > 0, regen.mask > 0)
        assert bool(regen.mask.any()) == (it["class"] != "normal")
        # every item has its calipers, derived from its mask (a normal image: no lesion)
        ann = load_calipers(out / it["calipers"])
        ref = calipers_from_mask(regen.mask > 0, it["spacing"], allow_empty=True, min_voxels=20)
        assert ann.spacing == ref.spacing and ann.image_shape == (48, 40) and len(ann) == len(ref)
        for a, b in zip(ann.lesions, ref.lesions):
            np.testing.assert_allclose(a.segments, b.segments, atol=1e-12)
        assert (len(ann) > 0) == (it["class"] != "normal")
    assert summary["calipers"]["files"] == 8 and summary["calipers"]["empty_annotations"] == 1
    with pytest.raises(DatasetError, match="not empty"):
        prepare_phantom(out, n_images=2, image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        prepare_phantom(tmp_path / "bad", image_size=(32, 32, 16))
    assert phantom_dataset._resolve_size(2, [32]) == (32, 32) and phantom_dataset._resolve_size(3, 24) == (24, 24, 24)
    with pytest.raises(ValueError, match="n_images"):
        prepare_phantom(tmp_path / "bad", n_images=0)
    with pytest.raises(ValueError, match="spatial_dims"):
        prepare_phantom(tmp_path / "bad", spatial_dims=4)


def test_prepare_phantom_3d_keeps_spacing(tmp_path):
    from monai.transforms import LoadImaged

    out = tmp_path / "ph3"
    prepare_phantom(out, n_images=3, spatial_dims=3, image_size=(24, 24, 8), val_fraction=0.0)
    dl = load_datalist(out / "datalist.json")
    assert dl["spatial_dims"] == 3 and len(dl["training"]) == 3
    loader = LoadImaged(keys=["image", "label"], image_only=True, reader="ITKReader")
    for it in dl["training"]:
        assert it["image"].endswith(".nii.gz") and it["spacing"] == pytest.approx(default_phantom_spacing((24, 24, 8)))
        d = loader({"image": str(out / it["image"]), "label": str(out / it["label"])})
        assert d["image"].shape == d["label"].shape == (24, 24, 8)
        np.testing.assert_allclose(np.asarray(d["image"].pixdim), it["spacing"], rtol=1e-5)
        assert set(np.unique(np.asarray(d["label"]))) <= {0, 1}
        ann = load_calipers(out / it["calipers"])
        assert ann.image_shape == (24, 24, 8) and ann.spacing == pytest.approx(it["spacing"])
        assert all(les.segments.shape == (3, 2, 3) for les in ann.lesions)


def test_ensure_phantom_dataset_generates_once(monkeypatch):
    calls = []
    real = phantom.prepare_phantom

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(phantom_dataset, "prepare_phantom", counting)
    p1 = ensure_phantom_dataset(2, n_images=4, image_size=32, seed=7)
    p2 = ensure_phantom_dataset(2, n_images=4, image_size=32, seed=7)
    assert p1 == p2 and len(calls) == 1
    path = Path(p1)
    assert path.parent == cache_dir() and path.name.startswith("phantom_2d_n4_32x32_seed7_v")
    assert json.loads((path / "summary.json").read_text())["output"] == p1
    dl = load_datalist(path / "datalist.json")
    assert len(dl["training"]) + len(dl["validation"]) == 4
    assert all((path / it["calipers"]).is_file() for it in dl["training"] + dl["validation"])
    # other parameters: another folder
    p3 = ensure_phantom_dataset(2, n_images=4, image_size=32, seed=8)
    assert p3 != p1 and len(calls) == 2
    # no temporary folder is left behind
    assert sorted(p.name for p in cache_dir().iterdir() if p.name.startswith(".")) == []


def test_default_phantom_dir_is_pure_and_is_where_ensure_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("USSEG_MONAI_CACHE", str(tmp_path / "cache"))
    d = phantom.default_phantom_dir(2, n_images=3, image_size=24, seed=5)
    assert not (tmp_path / "cache").exists()  # computing the path writes nothing (the bundles' dataset_dir)
    assert Path(d).parent == tmp_path / "cache" and Path(d).name.startswith("phantom_2d_n3_24x24_seed5_v")
    assert ensure_phantom_dataset(2, n_images=3, image_size=24, seed=5) == d
    assert phantom.default_phantom_dir(3) != phantom.default_phantom_dir(2)
    assert phantom.default_phantom_dir(2) == phantom.default_phantom_dir(2, image_size=(128, 128), n_images=64)


def test_ensure_phantom_dataset_into_a_given_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("USSEG_MONAI_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "mine" / "phantom"
    assert ensure_phantom_dataset(2, n_images=2, image_size=24, seed=1, output=out) == str(out)
    assert (out / "datalist.json").is_file() and not (tmp_path / "cache").exists()
    before = sorted(p.name for p in out.rglob("*"))
    assert ensure_phantom_dataset(2, n_images=2, image_size=24, seed=1, output=out) == str(out)
    assert sorted(p.name for p in out.rglob("*")) == before
    # an existing folder that is not a dataset is never filled or modified
    other = tmp_path / "my_data"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(DatasetError, match="my_data exists but has no datalist.json; choose an empty or missing"):
        ensure_phantom_dataset(2, n_images=2, image_size=24, seed=1, output=other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ensure_phantom_dataset(2, n_images=2, image_size=24, seed=1, output=empty) == str(empty)
    assert (empty / "datalist.json").is_file()


def test_ensure_phantom_dataset_concurrent_threads(monkeypatch):
    """Both callers generate (a barrier holds them until both are done), one rename wins, both get the
    winner's complete folder and the loser's copy is removed."""
    barrier = threading.Barrier(2, timeout=60)
    real = phantom.prepare_phantom

    def slow(*args, **kwargs):
        summary = real(*args, **kwargs)
        barrier.wait()
        return summary

    monkeypatch.setattr(phantom_dataset, "prepare_phantom", slow)
    results, errors = [], []

    def call():
        try:
            results.append(ensure_phantom_dataset(2, n_images=3, image_size=24, seed=11))
        except Exception as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 2 and results[0] == results[1]
    folders = [p for p in cache_dir().iterdir() if "seed11" in p.name]
    assert [p.name for p in folders] == [Path(results[0]).name]
    dl = load_datalist(Path(results[0]) / "datalist.json")
    assert sum(len(dl[s]) for s in ("training", "validation", "test")) == 3


def _ensure_in_process(args):
    import os

    os.environ["USSEG_MONAI_CACHE"] = args[0]
    from usseg_monai.data.phantom import ensure_phantom_dataset as ensure

    return ensure(2, n_images=3, image_size=24, seed=12)


@pytest.mark.slow
def test_ensure_phantom_dataset_concurrent_processes():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.map(_ensure_in_process, [(str(cache_dir()),)] * 2)
    assert paths[0] == paths[1]
    assert [p.name for p in cache_dir().iterdir() if "seed12" in p.name] == [Path(paths[0]).name]
    load_datalist(Path(paths[0]) / "datalist.json")


def test_ensure_phantom_dataset_damaged_cache():
    p = Path(ensure_phantom_dataset(2, n_images=2, image_size=24, seed=13))
    (p / "datalist.json").unlink()
    with pytest.raises(DatasetError, match="delete the folder"):
        ensure_phantom_dataset(2, n_images=2, image_size=24, seed=13)


def test_defaults():
    assert DEFAULT_IMAGE_SIZE == {2: (128, 128), 3: (64, 64, 32)}
    assert phantom.DEFAULT_N_IMAGES == {2: 64, 3: 16}
    key = phantom.phantom_dataset_key(3, 16, (64, 64, 32), 0)
    assert key.startswith("n16_64x64x32_seed0_v")
    assert key.endswith(f"_r{phantom.PHANTOM_MODEL_REVISION}_l{phantom.PHANTOM_LAYOUT_REVISION}")
    assert phantom.PHANTOM_LAYOUT_REVISION >= 2  # 2: caliper files; older cached phantoms lack them
