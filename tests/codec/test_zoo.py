"""The shipped models and the release history (codec/zoo.py, weights/releases.json): the table is
true to the manifest and the version, and a file of a retired model names the release to install."""
import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

import aecodec
from aecodec.codec import bitstream
from aecodec.codec.zoo import DEFAULT_MODEL, history, shipped_models

REPO = Path(__file__).resolve().parents[2]


def test_the_release_table_is_true_to_the_manifest_and_the_version():
    h, shipped = history(), shipped_models()
    newest = h["releases"][-1]
    assert newest["version"] == aecodec.__version__
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == aecodec.__version__
    assert re.search(rf"^## {re.escape(aecodec.__version__)} ", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert sorted(newest["models"]) == sorted(shipped) and newest["default_model"] == DEFAULT_MODEL
    for name, entry in shipped.items():  # shipped: the same weights, decoded by this release
        assert h["models"][name]["sha256"] == entry["sha256"] and h["models"][name]["last_release"] is None
    versions = [tuple(map(int, r["version"].split("."))) for r in h["releases"]]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    order = {r["version"]: i for i, r in enumerate(h["releases"])}
    for name, m in h["models"].items():
        if m["last_release"] is not None:
            assert name not in shipped and order[m["shipped_in"]] <= order[m["last_release"]] < len(order) - 1
            assert name in h["releases"][order[m["last_release"]]]["models"]
            assert name not in h["releases"][order[m["last_release"]] + 1]["models"]
    assert all(r["commit"] for r in h["releases"][:-1])  # the released ones are tagged commits


def _renamed(data: bytes, model: str, digest: bytes) -> bytes:
    header, z, y = bitstream.parse(data)
    return bitstream.pack(dataclasses.replace(header, model=model, digest=digest), z, y)


def test_a_retired_models_file_names_the_release_that_decodes_it():
    data = aecodec.compress(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(aecodec.AecError, match=r"'aec-cb-128-192-r6', which aecodec .* no longer ships; "
                                                r"aecodec 0\.12\.0 \(git tag v0\.12\.0, commit e724aa5\)"):
        aecodec.decompress(_renamed(data, "aec-cb-128-192-r6", bytes(8)))
    with pytest.raises(aecodec.AecError, match="which no aecodec release has shipped"):
        aecodec.decompress(_renamed(data, "aec-nobody", bytes(8)))
    r6 = bytes.fromhex(history()["models"]["aec-cb-128-192-r6"]["sha256"])[:8]
    with pytest.raises(aecodec.AecError, match=r"the weights of 'aec-cb-128-192-r6'.*aecodec 0\.12\.0"):
        aecodec.decompress(_renamed(data, DEFAULT_MODEL, r6))
