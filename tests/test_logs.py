"""The known-harmless MONAI notices are silenced one by one (#17): others still reach the user."""

from __future__ import annotations

import configparser
import logging
import logging.config
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from usseg_monai.logs import KnownMessageFilter, filter_known_warnings

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p for p in (ROOT / "bundles").iterdir() if (p / "configs" / "train.json").is_file())
NVIMG_LOGGER = "monai.data.nvimgcodec_pydicom_plugin"
CONFIG_NOTICE = (
    'parsing config_file x.json: any `"_target_"` value in it is resolved to an importable callable and invoked with '
    "no allow list (see https://github.com/Project-MONAI/MONAI/security/advisories/GHSA-873f-pvrv-4x83)."
)


def _recorded(fn, *, own_configs: bool = False) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filter_known_warnings(own_configs=own_configs)
        fn()
    return [str(w.message) for w in caught]


def test_known_warnings_silenced_others_kept() -> None:
    def emit() -> None:
        warnings.warn("the ground truth of class 0 is all 0, this may result in nan/inf distance.", UserWarning)
        warnings.warn("NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register successfully.")
        np.nanmean(np.array([np.nan]))  # RuntimeWarning: Mean of empty slice
        np.nanstd(np.array([np.nan]))  # RuntimeWarning: Degrees of freedom <= 0 for slice
        warnings.warn("a warning the user must see", UserWarning)
        warnings.warn("Mean of empty slice, but as a UserWarning", UserWarning)  # category must match too

    assert _recorded(emit) == ["a warning the user must see", "Mean of empty slice, but as a UserWarning"]


def test_config_notice_silenced_only_for_own_configs() -> None:
    def emit() -> None:
        warnings.warn(CONFIG_NOTICE, UserWarning)

    assert _recorded(emit) == [CONFIG_NOTICE]  # a user's own `monai.bundle run` keeps the security notice
    assert _recorded(emit, own_configs=True) == []


def test_real_monai_hausdorff_on_empty_label_is_quiet() -> None:
    from monai.metrics import compute_hausdorff_distance

    pred = torch.zeros(1, 1, 8, 8)
    pred[..., 2:5, 2:5] = 1
    label = torch.zeros(1, 1, 8, 8)
    with warnings.catch_warnings(record=True) as unfiltered:
        warnings.simplefilter("always")
        compute_hausdorff_distance(pred, label, percentile=95)
    assert any("nan/inf distance" in str(w.message) for w in unfiltered)  # MONAI does warn here...
    values: list[torch.Tensor] = []
    assert _recorded(lambda: values.append(compute_hausdorff_distance(pred, label, percentile=95))) == []
    assert not torch.isfinite(values[0]).all()  # ...and the value itself is unchanged (inf/nan, recorded as such)


def test_logger_filter_drops_only_the_known_message(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger(NVIMG_LOGGER)
    try:
        filter_known_warnings()
        filter_known_warnings()  # idempotent
        assert sum(isinstance(f, KnownMessageFilter) for f in log.filters) == 1
        with caplog.at_level(logging.INFO, logger=NVIMG_LOGGER):
            log.warning("nvImageCodec is not available; skipping pydicom decoder plugin registration.")
            log.warning("decoder failed on frame 3")
        assert [r.getMessage() for r in caplog.records if r.name == NVIMG_LOGGER] == ["decoder failed on frame 3"]
    finally:
        for f in [f for f in log.filters if isinstance(f, KnownMessageFilter)]:
            log.removeFilter(f)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_bundle_logging_conf_quiets_nvimgcodec_only(bundle: Path) -> None:
    conf = bundle / "configs" / "logging.conf"
    ini = configparser.ConfigParser()
    ini.read(conf)
    assert ini["logger_nvimgcodec"]["qualname"] == NVIMG_LOGGER
    assert ini["logger_nvimgcodec"]["level"] == "ERROR"
    assert ini["logger_root"]["level"] == "INFO"
    root, nvimg = logging.getLogger(), logging.getLogger(NVIMG_LOGGER)
    saved = (root.level, list(root.handlers), nvimg.level, list(nvimg.handlers), nvimg.propagate)
    try:
        logging.config.fileConfig(conf, disable_existing_loggers=False)  # as monai.bundle's workflows do
        assert nvimg.getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("monai.data").getEffectiveLevel() == logging.INFO  # the rest of MONAI is untouched
    finally:
        for h in root.handlers:
            if h not in saved[1]:
                root.removeHandler(h)
        root.setLevel(saved[0])
        nvimg.setLevel(saved[2])
        nvimg.handlers[:] = saved[3]
        nvimg.propagate = saved[4]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
@pytest.mark.parametrize("config", ["train", "evaluate", "inference", "multi_gpu_train"])
def test_bundle_configs_install_the_filters_first(bundle: Path, config: str) -> None:
    from monai.bundle import ConfigParser

    files = [bundle / "configs" / f"{config}.json"]
    if config in ("evaluate", "multi_gpu_train"):  # merged on top of train.json, as the bundle READMEs run them
        files.insert(0, bundle / "configs" / "train.json")
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    assert parser["initialize"][0] == "$usseg_monai.logs.filter_known_warnings()"
    assert "$import usseg_monai.logs" in parser["imports"]
