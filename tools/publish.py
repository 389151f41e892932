"""Copy a benchmark's tables into our documents: `python tools/publish.py [RESULTS ...]`.

After `aecodec bench ../shared/data/kodak -o results/kodak ...` (`make bench-kodak`, and
`make bench-urban` for results/urban), this rewrites, between their markers, the headline BD-rate
table (the first table of RESULTS/bd-rate.md) and the per-quality table (RESULTS/aecodec.json, with
the default k of the model that file names, and the PSNR difference to JPEG 2000 and AVIF at the
same bpp) in README.md, and the whole bd-rate.md in docs/benchmarks.md, so that the figures users
read are the ones measured. Markers: `<!-- results:SET:NAME -->` ... `<!-- /results:SET:NAME -->`,
SET the results folder's name (kodak, urban), NAME one of DOCUMENTS.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from aecodec.errors import AecError

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {"bd-rate": ("README.md",), "bd-rate-full": ("docs/benchmarks.md",), "per-quality": ("README.md",)}
ANCHOR_FILES = {"JPEG 2000": "jpeg-2000.json", "AVIF": "avif-444-tune-psnr.json"}


def replace_block(text: str, name: str, body: str) -> str:
    """text with the lines between `<!-- results:name -->` and `<!-- /results:name -->` replaced."""
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise AecError(f"markers {start} ... {end} not found")
    return text[:i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def model_name(result: dict) -> str:
    """The model an aecodec result was measured with (its `library` field names it)."""
    m = re.search(r"model (\S+)", result.get("library", ""))
    if not m:
        raise AecError("the aecodec result does not name its model")
    return m.group(1)


def per_quality_table(result: dict, default_k: list[int], anchors: dict[str, dict] | None = None) -> str:
    """One row per quality; with anchors ({name: results}), each one's PSNR difference at the same bpp."""
    from aecodec.bench.bdrate import psnr_at

    r = result["results"]
    anchors = anchors or {}
    rows = ["| quality | k | bpp | PSNR (dB) | MS-SSIM | encode s | decode s |"
            + "".join(f" vs {a} (dB) |" for a in anchors),
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(anchors)]
    gaps = [[p - a for p, a in zip(r["psnr-rgb"], psnr_at(c["bpp"], c["psnr-rgb"], r["bpp"]))]
            for c in anchors.values()]
    for i, (q, b, p, s, e, d) in enumerate(zip(r["param"], r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"],
                                               r["encoding_time"], r["decoding_time"])):
        cells = "".join(" n/a |" if g[i] != g[i] else f" {g[i]:+.2f} |" for g in gaps)
        rows.append(f"| {int(q)} | {default_k[int(q) - 1]} | {b:.3f} | {p:.2f} | {s:.4f} | {e:.2f} | {d:.2f} |" + cells)
    return "\n".join(rows)


def tables(results: Path) -> dict[str, str]:
    """{SET:NAME: body} for the documents' markers."""
    from aecodec.codec.weights import Weights

    aec = json.loads((results / "aecodec.json").read_text())
    anchors = {name: json.loads((results / f).read_text())["results"] for name, f in ANCHOR_FILES.items()
               if (results / f).exists()}
    full = (results / "bd-rate.md").read_text()
    headline = full.split("\nBD-rate in %")[0].rstrip("\n") + "\n"  # the first table: 0.1-1.5 bpp
    name = results.resolve().name
    return {f"{name}:bd-rate": headline, f"{name}:bd-rate-full": full,
            f"{name}:per-quality": per_quality_table(aec, Weights.shipped(model_name(aec)).default_k, anchors)}


def publish(results: Path, root: Path = ROOT) -> list[Path]:
    """Rewrite the documents' tables from `results`; returns the files that changed."""
    bodies = tables(results)
    changed = []
    for doc in dict.fromkeys(d for docs in DOCUMENTS.values() for d in docs):  # each file once, in order
        path = root / doc
        old = new = path.read_text()
        for key, body in bodies.items():
            if doc in DOCUMENTS[key.split(":")[-1]]:
                new = replace_block(new, key, body)
        if new != old:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/publish.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="*", default=[str(ROOT / "results" / "kodak")],
                   help="the bench's output folders (default results/kodak)")
    args = p.parse_args(argv)
    try:
        changed = [c for r in args.results for c in publish(Path(r))]
    except (AecError, OSError, KeyError) as e:
        print(f"publish: {e}")
        return 1
    print("updated " + ", ".join(str(c.relative_to(ROOT)) for c in changed) if changed else "tables already current")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
