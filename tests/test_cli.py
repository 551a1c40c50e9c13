"""The ``usseg`` command line: prepare, split, error exit codes, help, registration of subcommands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from test_prepare_busi import make_busi
from test_prepare_ddti import make_ddti
from usseg_monai import cli
from usseg_monai.cli.options import count_or_fraction


def test_prepare_busi_and_split(tmp_path, capsys):
    src = make_busi(tmp_path / "src")
    out = tmp_path / "out"
    rc = cli.main(["prepare", "busi", str(src), "--output", str(out), "--val-fraction", "0.3", "--seed", "2", "-q"])
    assert rc == 0
    assert "BUSI: 7 images" in capsys.readouterr().out
    dl = json.loads((out / "datalist.json").read_text())
    assert dl["split"] == {"seed": 2, "test_fraction": 0.0, "val_fraction": 0.3}
    n_train = len(dl["training"])

    rc = cli.main(["split", "--datalist", str(out / "datalist.json"), "--labeled", "2", "--class-only", "rest",
                   "--output", str(out / "datalist_2.json")])
    assert rc == 0
    new = json.loads((out / "datalist_2.json").read_text())
    sup = Counter(it["supervision"] for it in new["training"])
    assert sup == {"mask": 2, "class": n_train - 2}
    assert all(("label" in it) == (it["supervision"] == "mask") for it in new["training"])
    assert [it["image"] for it in new["validation"]] == [it["image"] for it in dl["validation"]]

    # a re-split into another folder rewrites the paths relative to the new datalist
    rc = cli.main(["split", "--datalist", str(out / "datalist.json"), "--resplit", "--n-folds", "3", "--fold", "2",
                   "--output", str(tmp_path / "elsewhere" / "dl.json")])
    assert rc == 0
    moved = json.loads((tmp_path / "elsewhere" / "dl.json").read_text())
    assert moved["split"]["n_folds"] == 3 and moved["training"][0]["image"].startswith("../out/images/")
    assert sum(len(moved[s]) for s in ("training", "validation", "test")) == 7


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    src = make_busi(tmp_path / "src")
    (src / "normal" / "normal (2)_mask.png").unlink()
    rc = cli.main(["prepare", "busi", str(src), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("usseg prepare: error:") and "normal (2).png has no mask" in err

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("x")
    rc = cli.main(["prepare", "ddti", str(make_ddti(tmp_path / "d")), "-o", str(busy)])
    assert rc == 2 and "not empty" in capsys.readouterr().err

    rc = cli.main(
        ["split", "--datalist", str(tmp_path / "nope.json"), "--labeled", "0.1", "-o", str(tmp_path / "x.json")]
    )
    assert rc == 2 and "datalist not found" in capsys.readouterr().err
    # bad option values are argparse usage errors (exit 2 too)
    with pytest.raises(SystemExit) as e:
        cli.main(["split", "--datalist", "d.json", "--labeled", "lots", "-o", "x.json"])
    assert e.value.code == 2


def test_count_or_fraction():
    assert count_or_fraction("20") == 20 and isinstance(count_or_fraction("20"), int)
    assert count_or_fraction("0.04") == 0.04 and count_or_fraction("rest") == "rest"
    for bad in ("-1", "1.5", "many"):
        with pytest.raises(Exception):
            count_or_fraction(bad)


def test_help_lists_every_dataset(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name in ("busi", "ddti", "dicom", "volumes", "phantom"):
        assert name in text


def test_subcommand_registry(monkeypatch, tmp_path, capsys):
    def add_hello(subparsers):
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    monkeypatch.setattr(sys.modules[__name__], "add_hello", add_hello, raising=False)
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, f"{__name__}:add_hello"])
    assert cli.main(["hello", "--name", "MONAI"]) == 0
    assert capsys.readouterr().out.strip() == "hello MONAI"

    # lazy entries: listed in the help without importing their module, imported when they run
    lazy = [
        ("hello", "say hi lazily", f"{__name__}:add_hello"),
        ("broken", "needs a missing module", "no_such_module_xyz:add"),
    ]
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS[:2], *lazy])
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "say hi lazily" in text and "needs a missing module" in text and "prepare" in text
    assert cli.main(["hello", "--name", "lazy"]) == 0
    assert capsys.readouterr().out.strip() == "hello lazy"
    with pytest.raises(SystemExit) as e:
        cli.main(["broken"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_prepare_phantom(tmp_path, capsys):
    out = tmp_path / "ph"
    rc = cli.main(["prepare", "phantom", "--output", str(out), "--n-images", "4", "--spatial-dims", "2",
                   "--size", "48", "40", "--seed", "1", "--val-fraction", "0.25", "-q"])
    assert rc == 0
    dl = json.loads((out / "datalist.json").read_text())
    assert sum(len(dl[s]) for s in ("training", "validation", "test")) == 4
    from monai.transforms import LoadImage

    img = LoadImage(image_only=True)(str(out / dl["training"][0]["image"]))
    assert tuple(img.shape) == (48, 40)


def test_prepare_phantom_single_size_value_means_square_2d(tmp_path):
    out = tmp_path / "ph1"
    assert cli.main(["prepare", "phantom", "--output", str(out), "--n-images", "4", "--size", "32", "-q"]) == 0
    dl = json.loads((out / "datalist.json").read_text())
    from monai.transforms import LoadImage

    img = LoadImage(image_only=True)(str(out / dl["training"][0]["image"]))
    assert tuple(img.shape) == (32, 32)


@pytest.mark.slow
def test_console_script_help():
    cmd = [sys.executable, "-m", "usseg_monai.cli", "split", "--help"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--labeled" in res.stdout and "--resplit" in res.stdout


def test_prepare_with_calipers_then_split_keeps_them(tmp_path, capsys):
    from usseg_monai.calipers import load_calipers

    src = make_busi(tmp_path / "src")
    out = tmp_path / "out"
    # the tiny BUSI masks are 16-30 px: under the default 20-voxel speckle threshold some would be dropped
    rc = cli.main(["prepare", "busi", str(src), "-o", str(out), "--calipers", "--caliper-min-voxels", "4", "-q"])
    assert rc == 0 and "test 0), 7 caliper files (6 lesions, 2 without lesion) ->" in capsys.readouterr().out
    dl = json.loads((out / "datalist.json").read_text())
    items = [it for s in ("training", "validation", "test") for it in dl[s]]
    for it in items:
        ann = load_calipers(out / it["calipers"])
        assert (len(ann) == 0) == (it["class"] == "normal") and ann.meta["min_voxels"] == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calipers"]["files"] == 7 and summary["n_with_calipers"] == 7
    # masks dropped by a partition keep their calipers (caliper-supervised training reads only those)
    rc = cli.main(["split", "--datalist", str(out / "datalist.json"), "--labeled", "1", "--class-only", "rest",
                   "-o", str(out / "dl_1.json")])
    assert rc == 0
    new = json.loads((out / "dl_1.json").read_text())
    assert all("calipers" in it for it in new["training"]) and sum("label" in it for it in new["training"]) == 1
    # without --calipers nothing is derived
    assert cli.main(["prepare", "ddti", str(make_ddti(tmp_path / "d")), "-o", str(tmp_path / "dd"), "-q"]) == 0
    assert not (tmp_path / "dd" / "calipers").exists()
    rc = cli.main(["prepare", "ddti", str(tmp_path / "d"), "-o", str(tmp_path / "dj"), "--calipers",
                   "--caliper-jitter-mm", "0.2", "-q"])
    assert rc == 0 and json.loads((tmp_path / "dj" / "summary.json").read_text())["calipers"]["jitter_mm"] == 0.2


def test_calipers_subcommand(tmp_path, capsys):
    from usseg_monai.calipers import load_calipers

    assert ("calipers" in [e[0] for e in cli.SUBCOMMANDS if isinstance(e, tuple)])
    src = make_busi(tmp_path / "src")
    prepared = tmp_path / "prep"
    assert cli.main(["prepare", "busi", str(src), "-o", str(prepared), "-q"]) == 0
    capsys.readouterr()
    out = tmp_path / "cal"
    rc = cli.main(["calipers", str(prepared), "--output", str(out), "--min-voxels", "4", "--jitter-mm", "0.1",
                   "--seed", "3", "--sections", "training", "validation", "test"])
    assert rc == 0 and "calipers: 7 files (6 lesions, 2 without lesion" in capsys.readouterr().out
    dl = json.loads((out / "datalist.json").read_text())
    it = dl["training"][0]
    assert it["image"].startswith("../prep/images/") and load_calipers(out / it["calipers"]).meta["seed"] == 3
    assert not (prepared / "calipers").exists()
    rc = cli.main(["calipers", str(prepared), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("usseg calipers: error:") and "not empty" in err and len(err.splitlines()) == 1
    assert cli.main(["calipers", str(prepared), "-o", str(out), "--overwrite", "-q"]) == 0


def test_prepare_phantom_always_writes_calipers(tmp_path, capsys):
    from usseg_monai.calipers import load_calipers

    out = tmp_path / "ph"
    rc = cli.main(["prepare", "phantom", "-o", str(out), "--n-images", "3", "--size", "32",
                   "--caliper-jitter-mm", "0.3", "-q"])
    assert rc == 0
    dl = json.loads((out / "datalist.json").read_text())
    anns = [load_calipers(out / it["calipers"]) for s in ("training", "validation") for it in dl[s]]
    assert len(anns) == 3 and all(a.meta["jitter_mm"] == 0.3 for a in anns)


def test_version(capsys):
    import monai
    import torch

    import usseg_monai

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"usseg-monai {usseg_monai.__version__} (MONAI {monai.__version__}, torch {torch.__version__}")


def test_parse_set_options_json_values_and_errors():
    from usseg_monai.cli.options import parse_set_options, parse_value

    assert parse_set_options(["image_size=[256,256]", "lr=0.5", "name=unext", "flag=true", "expr=$@a + 1"]) == {
        "image_size": [256, 256], "lr": 0.5, "name": "unext", "flag": True, "expr": "$@a + 1"}
    assert parse_set_options(None) == {} and parse_value("a=b") == "a=b"
    for bad in ("image_size", "=3"):
        with pytest.raises(ValueError, match=rf"--set '{bad}': expected KEY=VALUE"):
            parse_set_options([bad])


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="needs POSIX permissions, not root")
def test_os_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    """An unwritable output folder: `usseg <cmd>: error: <path>: <reason>`, exit 2, and nothing written."""
    src = make_busi(tmp_path / "src")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc = cli.main(["prepare", "busi", str(src), "-o", str(locked / "out")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("usseg prepare: error:") and str(locked) in err and "Permission denied" in err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_os_error_message_form(monkeypatch, tmp_path, capsys):
    """OS errors are reported in the one-line form (these run as root too): an output below a file, and any
    OSError a subcommand raises."""
    src = make_busi(tmp_path / "src")
    (tmp_path / "a_file").write_text("x")
    rc = cli.main(["prepare", "busi", str(src), "-o", str(tmp_path / "a_file" / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("usseg prepare: error:"), err
    assert str(tmp_path / "a_file") in err and "Traceback" not in err

    def boom(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.json"))

    monkeypatch.setattr("usseg_monai.cli.data.split_datalist", boom)
    rc = cli.main(["split", "--datalist", str(tmp_path / "d.json"), "--labeled", "0.5", "-o", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"usseg split: error: {tmp_path / 'x.json'}: Permission denied"
