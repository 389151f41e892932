"""tools/release.py: the release tables it writes are the ones tests/codec/test_zoo.py accepts."""
import json
import re

import pytest

import release

RELEASES = {"_about": "x", "releases": [
    {"version": "0.1.0", "tag": "v0.1.0", "commit": "aaa", "date": "d0", "default_model": "m1", "models": ["m1"]},
    {"version": "0.2.0", "tag": "v0.2.0", "commit": None, "date": "d1", "default_model": "m2", "models": ["m1", "m2"]}],
    "models": {"m1": {"sha256": "1", "shipped_in": "0.1.0", "last_release": None},
               "m2": {"sha256": "2", "shipped_in": "0.2.0", "last_release": None}}}


def test_a_release_adds_its_model_and_retires_the_dropped_ones():
    out = release.update_releases(RELEASES, "0.3.0", "m3", "3", "d2", ["m1"], "bbb")
    assert [r["version"] for r in out["releases"]] == ["0.1.0", "0.2.0", "0.3.0"]
    assert out["releases"][1]["commit"] == "bbb" and out["releases"][2]["commit"] is None
    assert out["releases"][2] == {"version": "0.3.0", "tag": "v0.3.0", "commit": None, "date": "d2",
                                  "default_model": "m3", "models": ["m2", "m3"]}
    assert out["models"]["m1"]["last_release"] == "0.2.0" and out["models"]["m2"]["last_release"] is None
    assert out["models"]["m3"] == {"sha256": "3", "shipped_in": "0.3.0", "last_release": None}
    assert RELEASES["releases"][1]["commit"] is None  # the input is left as it was
    for bad in (("0.2.0", "m3", []), ("0.3.0", "m2", []), ("0.3.0", "m3", ["m9"])):
        with pytest.raises(SystemExit):
            release.update_releases(RELEASES, bad[0], bad[1], "3", "d2", bad[2], "bbb")


def test_the_manifest_lists_what_ships():
    manifest = {"models": {"m1": {"file": "m1.safetensors", "sha256": "1"},
                           "m2": {"file": "m2.safetensors", "sha256": "2"}}}
    assert release.update_manifest(manifest, "m3", "3", ["m1"]) == {
        "models": {"m2": {"file": "m2.safetensors", "sha256": "2"}, "m3": {"file": "m3.safetensors", "sha256": "3"}}}


def test_versions_are_replaced_once_where_the_pattern_says():
    text = 'name = "aecodec"\nversion = "0.15.0"\n[tool.x]\nversion = "9"\n'
    assert release.set_version(text, r'^version = "([^"]+)"', "0.16.0") == text.replace('"0.15.0"', '"0.16.0"')
    with pytest.raises(SystemExit):
        release.set_version(text, r'^__version__ = "([^"]+)"', "0.16.0")


def test_the_checkout_agrees_with_what_the_tool_reads():
    """The files and patterns the tool edits are there (a renamed field would break a release)."""
    releases = json.loads((release.WEIGHTS / "releases.json").read_text())
    version = re.search(r'^__version__ = "([^"]+)"', (release.ROOT / "aecodec" / "_version.py").read_text(), re.M)
    assert releases["releases"][-1]["version"] == version.group(1)
    for path, pattern in ((release.ROOT / "pyproject.toml", r'^version = "([^"]+)"'),
                          (release.ROOT / "aecodec" / "codec" / "zoo.py", r'^DEFAULT_MODEL = "([^"]+)"')):
        release.set_version(path.read_text(), pattern, "x")
    golden = json.loads((release.COMPAT / "golden.json").read_text())
    assert {"machine", "made_by", "crops_of_kodim23", "files"} <= set(golden)
