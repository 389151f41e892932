"""tools/publish.py: the tables users read in README and docs/ are the ones results/ holds."""
import json
import re

import pytest

import publish
from aecodec.errors import AecError


@pytest.mark.parametrize("results", sorted(p.name for p in (publish.ROOT / "results").iterdir()
                                            if (p / "aecodec.json").exists()))
def test_documents_show_the_measured_tables(results):
    measured = publish.tables(publish.ROOT / "results" / results)
    for key, body in measured.items():
        for doc in publish.DOCUMENTS[key.split(":")[-1]]:
            text = (publish.ROOT / doc).read_text()
            assert publish.replace_block(text, key, body) == text, f"{doc}: {key} table differs from results/{results}"


def test_replace_block_rewrites_only_between_its_markers():
    text = "intro\n<!-- results:x -->\nold\n<!-- /results:x -->\nafter\n"
    assert publish.replace_block(text, "x", "new\n") == "intro\n<!-- results:x -->\nnew\n<!-- /results:x -->\nafter\n"
    with pytest.raises(AecError, match="markers"):
        publish.replace_block(text, "y", "new")


def test_per_quality_table_takes_k_from_the_model():
    result = {"library": "aecodec 0.1.0, model aec-test (sha256 00)",
              "results": {"param": [1, 2], "bpp": [0.2, 0.3], "psnr-rgb": [28.0, 29.5], "ms-ssim-rgb": [0.93, 0.95],
                          "encoding_time": [0.4, 0.41], "decoding_time": [0.39, 0.4]}}
    assert publish.model_name(result) == "aec-test"
    lines = publish.per_quality_table(result, [32, 48] + [96] * 6).splitlines()
    assert lines[2] == "| 1 | 32 | 0.200 | 28.00 | 0.9300 | 0.40 | 0.39 |"
    assert lines[3].startswith("| 2 | 48 | 0.300 | 29.50 |")
    anchor = {"JPEG 2000": {"bpp": [0.1, 0.3, 0.5], "psnr-rgb": [26.0, 29.0, 31.0]}}
    lines = publish.per_quality_table(result, [32, 48] + [96] * 6, anchor).splitlines()
    assert lines[0].endswith("| vs JPEG 2000 (dB) |") and lines[3].endswith("| 0.40 | +0.50 |")


def test_cli_reports_a_missing_folder_in_one_line(tmp_path, capsys):
    assert publish.main([str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("publish:") and out.count("\n") == 1


def test_readme_results_name_the_model_that_was_measured_and_ships_as_default():
    from aecodec.codec.zoo import DEFAULT_MODEL

    readme = (publish.ROOT / "README.md").read_text()
    measured = json.loads((publish.ROOT / "results" / "kodak" / "aecodec.json").read_text())
    assert publish.model_name(measured) == DEFAULT_MODEL
    assert re.search(r"^Default model `([^`]+)`", readme, re.M).group(1) == DEFAULT_MODEL
