"""docs/version-matrix.md is generated from targets/ and the build planners, and must match them."""

from __future__ import annotations

from pathlib import Path

from edgeq import targets
from edgeq.check import matrix

PAGE = Path(__file__).resolve().parent.parent / "docs" / "version-matrix.md"


def test_page_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == matrix.render(), "regenerate: python -m edgeq.check.matrix docs/version-matrix.md"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in matrix.render().splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_row_holds_its_profile_and_every_cell_has_a_source():
    rows, page = _rows(), matrix.render()
    for target in targets.all_targets():
        assert target.name in rows and f"### `{target.name}`" in page
        if target.backend != "tensorrt":
            continue
        _, jetpack, l4t, tensorrt, cuda, cc, dla, *_ = rows[target.name]
        assert (jetpack, tensorrt, cuda, cc) == (target.jetpack, target.tensorrt, target.cuda, target.compute_capability)
        assert l4t == (target.l4t or "not verified")
        assert dla == f"{target.dla_cores} / {target.usable_dla_cores}"
        section = page.split(f"### `{target.name}`")[1].split("###")[0]
        for field in ("jetpack", "l4t", "tensorrt", "cuda", "compute_capability"):
            assert f"- {field}: {target.sources[field].replace('|', chr(92) + '|')[:60]}" in section
        assert "samples/common/sampleOptions.cpp" in section and "python/src/infer/pyCore.cpp" in section


def test_the_rows_show_the_version_differences():
    rows = _rows()
    assert rows["tx2-jp4.6"][7] == "none (FP16)" and "`--workspace` (574)" in rows["tx2-jp4.6"][8]
    assert rows["tx2-jp4.6"][9].startswith("TensorRT 8.2+")  # the binding-index run path and max_workspace_size
    assert rows["agx-orin-jp7.2"][6] == "2 / 0" and rows["agx-orin-jp6.2"][6] == "2 / 2"
    assert "default implicit" in rows["agx-xavier-jp5.1"][7] and "`--calib` (890)" in rows["agx-xavier-jp5.1"][8]
    assert "`--int8`" not in rows["agx-orin-jp7.2.2-trt11"][8] and rows["agx-orin-jp7.2.2-trt11"][2] == "not verified"
