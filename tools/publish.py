"""Copy a benchmark's tables into our documents: `python tools/publish.py [RESULTS]`.

After `aecodec bench ../shared/data/kodak -o results/kodak ...` (`make bench-kodak`), this
rewrites, between their markers, the BD-rate table (results/kodak/bd-rate.md) in README.md and
docs/benchmarks.md, and README's per-quality table (results/kodak/aecodec.json, with the default k
of the model that file names), so that the figures users read are the ones measured.
Markers: `<!-- results:NAME -->` ... `<!-- /results:NAME -->`.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from aecodec.errors import AecError

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {"bd-rate": ("README.md", "docs/benchmarks.md"), "per-quality": ("README.md",)}


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


def per_quality_table(result: dict, default_k: list[int]) -> str:
    r = result["results"]
    rows = ["| quality | k | Kodak bpp | PSNR (dB) | MS-SSIM | encode s | decode s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for q, b, p, s, e, d in zip(r["param"], r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"], r["encoding_time"],
                                r["decoding_time"]):
        rows.append(f"| {int(q)} | {default_k[int(q) - 1]} | {b:.3f} | {p:.2f} | {s:.4f} | {e:.2f} | {d:.2f} |")
    return "\n".join(rows)


def tables(results: Path) -> dict[str, str]:
    from aecodec.codec.weights import Weights

    aec = json.loads((results / "aecodec.json").read_text())
    return {"bd-rate": (results / "bd-rate.md").read_text(),
            "per-quality": per_quality_table(aec, Weights.shipped(model_name(aec)).default_k)}


def publish(results: Path, root: Path = ROOT) -> list[Path]:
    """Rewrite the documents' tables from `results`; returns the files that changed."""
    bodies = tables(results)
    changed = []
    for doc in dict.fromkeys(d for docs in DOCUMENTS.values() for d in docs):  # each file once, in order
        path = root / doc
        old = new = path.read_text()
        for name, body in bodies.items():
            if doc in DOCUMENTS[name]:
                new = replace_block(new, name, body)
        if new != old:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/publish.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", default=str(ROOT / "results" / "kodak"),
                   help="the bench's output folder (default results/kodak)")
    args = p.parse_args(argv)
    try:
        changed = publish(Path(args.results))
    except (AecError, OSError, KeyError) as e:
        print(f"publish: {e}")
        return 1
    print("updated " + ", ".join(str(c.relative_to(ROOT)) for c in changed) if changed else "tables already current")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
