"""Ship a model: the mechanical part of a release (docs/models.md, "Shipping a model is a release").

    python tools/release.py 0.16.0 aec-cb-128-192-r10 EXPORTED.safetensors [--drop MODEL ...]

In this checkout it:
- copies the weights into aecodec/weights/ and lists them in manifest.json (sha256); a dropped
  model's file goes, its manifest entry too;
- releases.json: the previous release's commit becomes its tag's, the new release is added (commit
  null until the next one), the new model is listed (shipped_in), a dropped one gets last_release;
- the version (pyproject.toml, aecodec/_version.py) and zoo.DEFAULT_MODEL;
- compat files for the new model (tests/data/compat: three crops of kodim23 at q1, q4.5 and q8,
  coded by the numpy engine) and their hashes in golden.json, as tests/codec/test_compat.py reads
  them; the dropped model's compat files go.
Then it prints what is left by hand: the benchmarks, CHANGELOG, docs/models.md, README, the tag.
Run it in the working tree the package is installed from (editable), with training paused.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "aecodec" / "weights"
COMPAT = ROOT / "tests" / "data" / "compat"
COMPAT_QUALITIES = (1, 4.5, 8)


def _dump(path: Path, data: dict, indent: int) -> None:
    path.write_text(json.dumps(data, indent=indent) + "\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update_manifest(manifest: dict, model: str, digest: str, drop: list[str]) -> dict:
    models = {k: v for k, v in manifest["models"].items() if k not in drop}
    models[model] = {"file": f"{model}.safetensors", "sha256": digest}
    return {**manifest, "models": models}


def update_releases(releases: dict, version: str, model: str, digest: str, date: str, drop: list[str],
                    previous_commit: str) -> dict:
    """releases.json with `version` shipping `model` (the default) and retiring `drop`."""
    history = [dict(r) for r in releases["releases"]]
    if any(r["version"] == version for r in history):
        raise SystemExit(f"release {version} is already in releases.json")
    previous = history[-1]
    previous["commit"] = previous_commit
    shipped = [m for m in previous["models"] if m not in drop] + [model]
    history.append({"version": version, "tag": f"v{version}", "commit": None, "date": date,
                    "default_model": model, "models": shipped})
    models = {k: dict(v) for k, v in releases["models"].items()}
    if model in models:
        raise SystemExit(f"{model} is already in releases.json")
    for m in drop:
        if m not in previous["models"]:
            raise SystemExit(f"--drop {m}: not shipped in {previous['version']}")
        models[m]["last_release"] = previous["version"]
    models[model] = {"sha256": digest, "shipped_in": version, "last_release": None}
    return {**releases, "releases": history, "models": models}


def set_version(text: str, pattern: str, version: str) -> str:
    """Replace the one version string that `pattern` (a regex with one group around it) finds."""
    new, n = re.subn(pattern, lambda m: m.group(0).replace(m.group(1), version), text, count=1, flags=re.M)
    if n != 1:
        raise SystemExit(f"version pattern {pattern!r} not found")
    return new


def _compat_machine() -> str:
    """The machine string tests/codec/test_compat.py compares golden.json's with."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_test_compat", ROOT / "tests" / "codec" / "test_compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine()


def compat_entries(model: str, crops: dict) -> dict[str, tuple[bytes, dict]]:
    """{file name: (.aec bytes, its golden.json entry)} for the model's compat files."""
    import numpy as np
    from PIL import Image

    from aecodec.codec import bitstream, coder, engines
    from golden import sha  # tools/golden.py: the refactor guard's short hashes, the compat test's too

    with Image.open(ROOT / "aecodec" / "data" / "kodim23.png") as im:
        image = im.convert("RGB")
    kinds = {"numpy": engines.create("numpy", model), "torch": engines.create("torch", model, device="cpu")}
    out = {}
    for crop, box in crops.items():
        rgb = np.asarray(image.crop(tuple(box)))
        for q in COMPAT_QUALITIES:
            codes = {k: coder.encode(rgb, "RGB", q, engine=e) for k, e in kinds.items()}
            data = codes["numpy"]
            header, z_bytes, y_bytes = bitstream.parse(data)
            engine = kinds["numpy"]
            with engine.session():
                y_hat = engine.decode_latents(y_bytes, z_bytes, (-(-header.height // 64), -(-header.width // 64)))
            entry = {"numpy_encode": sha(codes["numpy"]), "torch_encode": sha(codes["torch"]),
                     "latents": sha(np.ascontiguousarray(engine.to_chw(y_hat).transpose(1, 2, 0)).tobytes())}
            for k, e in kinds.items():
                entry[f"{k}_pixels"] = sha(coder.decode(data, engine=e)[0])
            out[f"{model}-{crop}-q{q:g}.aec"] = (data, entry)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/release.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("version", help="the new release, X.Y.0")
    ap.add_argument("model", help="the new default model's name, e.g. aec-cb-128-192-r10")
    ap.add_argument("weights", help="its exported weights (aecodec export)")
    ap.add_argument("--drop", action="append", default=[], help="a shipped model this release retires")
    ap.add_argument("--date", default=None, help="the release date (default: today)")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"\d+\.\d+\.\d+", args.version):
        raise SystemExit(f"version {args.version!r}: expected X.Y.Z")
    import datetime

    date = args.date or datetime.date.today().isoformat()
    target = WEIGHTS / f"{args.model}.safetensors"
    if target.exists():
        raise SystemExit(f"{target} exists")
    releases = json.loads((WEIGHTS / "releases.json").read_text())
    previous = releases["releases"][-1]["version"]
    tag = subprocess.run(["git", "rev-list", "-n", "1", f"v{previous}"], cwd=ROOT, capture_output=True, text=True)
    if tag.returncode != 0:
        raise SystemExit(f"the previous release's tag v{previous} is missing: tag it first")

    golden = json.loads((COMPAT / "golden.json").read_text())
    here = _compat_machine()
    if here != golden["machine"]:  # test_compat compares exact hashes only on the machine that made the files
        raise SystemExit(f"the compat files were made on {golden['machine']}; this is {here}: make the new "
                         "ones there, or remake them all here (golden.json has one machine)")

    shutil.copyfile(args.weights, target)
    digest = sha256(target)
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    for m in args.drop:
        (WEIGHTS / manifest["models"][m]["file"]).unlink()
    manifest = update_manifest(manifest, args.model, digest, args.drop)
    _dump(WEIGHTS / "manifest.json", manifest, 2)
    _dump(WEIGHTS / "releases.json",
          update_releases(releases, args.version, args.model, digest, date, args.drop, tag.stdout.strip()), 1)
    for path, pattern in ((ROOT / "pyproject.toml", r'^version = "([^"]+)"'),
                          (ROOT / "aecodec" / "_version.py", r'^__version__ = "([^"]+)"'),
                          (ROOT / "aecodec" / "codec" / "zoo.py", r'^DEFAULT_MODEL = "([^"]+)"')):
        path.write_text(set_version(path.read_text(), pattern, args.model if path.name == "zoo.py" else args.version))

    for m in args.drop:
        golden["made_by"].pop(m, None)
        for name in [n for n in golden["files"] if n.startswith(f"{m}-")]:
            golden["files"].pop(name)
            (COMPAT / name).unlink(missing_ok=True)
    for name, (data, entry) in compat_entries(args.model, golden["crops_of_kodim23"]).items():
        (COMPAT / name).write_bytes(data)
        golden["files"][name] = entry
    golden["made_by"][args.model] = f"v{args.version}"
    _dump(COMPAT / "golden.json", golden, 1)
    size = sum((WEIGHTS / m["file"]).stat().st_size for m in manifest["models"].values())
    print(f"{args.model} ships in {args.version} (default); shipped weights {size / 1e6:.1f} MB in all.\n"
          "Left by hand: make bench-kodak and make bench-urban (results/, README, docs/benchmarks.md), "
          "a CHANGELOG entry, a docs/models.md row, the lab's progress row, pytest, a commit, "
          f"then git tag v{args.version}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
