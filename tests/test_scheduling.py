"""The units of work of the xdist workers (tests/conftest.py), which decide how often a module fixture is built."""

from __future__ import annotations

from conftest import LONGEST_FIRST, xdist_scope


def test_a_module_is_one_unit_except_servers_and_docs_blocks() -> None:
    assert xdist_scope("tests/test_bundles.py::test_layout_and_metadata[unet_us_2d_segmentation]") == "tests/test_bundles.py"
    assert xdist_scope("tests/test_bundles.py::test_verify_net_in_out[crbnet_us_3d_segmentation]") == "tests/test_bundles.py"
    # every test of one bundle's MONAI Label server together, other bundles apart
    a = xdist_scope("tests/test_monailabel.py::test_info_lists_the_bundle[crbnet_us_2d_segmentation]")
    b = xdist_scope("tests/test_monailabel.py::test_train_writes_a_checkpoint[crbnet_us_2d_segmentation]")
    c = xdist_scope("tests/test_monailabel.py::test_info_lists_the_bundle[unet_us_3d_segmentation]")
    assert a == b != c
    assert xdist_scope("tests/test_monailabel.py::test_package_imports_with_numpy1_and_pydicom2") == "tests/test_monailabel.py"
    # each runnable docs block alone; the lint tests with their module
    run = "tests/test_docs_runnable.py::test_runnable_block_runs_in_a_fresh_copy"
    assert xdist_scope(f"{run}[README.md#0]") != xdist_scope(f"{run}[bundles/unet_us_2d_segmentation/docs/README.md#0]")
    assert xdist_scope("tests/test_docs_runnable.py::test_runnable_block_lints[README.md#0]") == "tests/test_docs_runnable.py"
    assert all(prefix.startswith("tests/test_") for prefix in LONGEST_FIRST)
