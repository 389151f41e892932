"""`aecodec bench DIR`: rate-distortion of aecodec against JPEG, JPEG 2000, WebP and AVIF.

For every image and operating point: encode, decode to 8-bit RGB, measure bpp (whole file, header
included: bytes * 8 / pixels), PSNR, MS-SSIM and encode/decode time. Writes into OUTDIR:
  rd.csv           one row per image per operating point
  <codec>.json     per-codec averages in CompressAI's results format (as ../shared/reference)
  bd-rate.md       BD-rate (PSNR and MS-SSIM) of every codec against JPEG and JPEG 2000
  rd.png           PSNR-bpp and MS-SSIM-bpp curves (with --reference curves overlaid), 0-2 bpp
It prints the BD-rate table and aecodec's per-quality averages. Curves are drawn sorted by rate,
without the points that a cheaper point of the same codec matches or beats in quality (they stay
in rd.csv and the JSONs; BD-rates sort by quality and use them all).
Finished points are cached in OUTDIR/cache, so a rerun only computes what is new.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from ..codec.config import MAX_EFFORT
from ..errors import AecError
from ..fileio import atomic_write_bytes
from ..imageio import list_images
from .bdrate import bd_rate, psnr_at
from .codecs import AVIF_PSNR, Codec, aec_codecs, classic_codecs
from .metrics import ms_ssim, psnr
from .rd_args import CODECS, add_arguments

ANCHORS = ("JPEG 4:2:0", "JPEG 2000", AVIF_PSNR)
WIDE_RANGE = (0.1, 2.0)  # the second BD-rate table's range: the high-fidelity end the headline leaves out
FIELDS = ["image", "codec", "param", "bytes", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s"]


def _load_rgb(path: Path, crop: int | None) -> Image.Image:
    with Image.open(path) as im:
        img = im.convert("RGB")
    if crop:
        w, h = img.size
        s = min(crop, w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return img


def measure(codec: Codec, path: Path, crop: int | None) -> dict:
    img = _load_rgb(path, crop)
    t0 = time.perf_counter()
    data = codec.encode(img)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    a, b = np.asarray(img), np.asarray(out.convert("RGB"))
    try:
        ms = ms_ssim(a, b)
    except ValueError:
        ms = float("nan")
    return {"image": path.name, "codec": codec.name, "param": codec.param, "bytes": len(data),
            "bpp": len(data) * 8 / (img.width * img.height), "psnr": psnr(a, b), "ms_ssim": ms,
            "encode_s": t1 - t0, "decode_s": t2 - t1}


def _task(args):
    codec, path, crop = args
    return measure(codec, path, crop)


def _cache_file(cache: Path, codec: Codec, path: Path, digest: str, crop) -> Path:
    key = f"{codec.key}|{digest}|{crop}"
    return cache / (hashlib.sha1(key.encode()).hexdigest() + ".json")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace(":", "")).strip("-")


def _published_rows(outdir: Path, codecs: list[Codec]) -> dict:
    """Classic codecs' per-image rows from a committed OUTDIR/rd.csv, for a machine whose cache is
    empty (the classic sweep takes over an hour on 2 cores). A codec's rows count only where its
    OUTDIR/<codec>.json names the same settings and library version as this machine's codec;
    aecodec's curves are always measured."""
    csv_path = outdir / "rd.csv"
    if not csv_path.exists():
        return {}
    same = set()
    for codec in {c.name: c for c in codecs}.values():  # one JSON per curve, not per point
        doc_path = outdir / f"{_slug(codec.name)}.json"
        if codec.name.startswith("aecodec") or not codec.library() or not doc_path.exists():
            continue
        try:
            doc = json.loads(doc_path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("settings") == codec.settings() and doc.get("library") == codec.library():
            same.add(codec.name)
    out = {}
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("codec") in same:
                try:
                    row = {"image": r["image"], "codec": r["codec"], "param": float(r["param"]),
                           **{k: (int(r[k]) if k == "bytes" else float(r[k])) for k in FIELDS[3:]}}
                except (KeyError, ValueError):
                    continue
                out[row["codec"], row["param"], row["image"]] = row
    return out


def run(directory, outdir, codecs: list[Codec], jobs: int = 1, crop: int | None = None,
        max_images: int | None = None, progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    images = list_images(directory)[:max_images]
    outdir = Path(outdir)
    cache = outdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in images}
    rows, todo = [], []
    published = _published_rows(outdir, codecs) if crop is None else {}
    for codec in codecs:
        for p in images:
            f = _cache_file(cache, codec, p, digests[p], crop)
            row = published.get((codec.name, float(codec.param), p.name))
            if f.exists():
                rows.append(json.loads(f.read_text()))
            elif row is not None:
                f.write_text(json.dumps(row))
                rows.append(row)
            else:
                todo.append((codec, p, crop, f))
    bar = tqdm(total=len(todo), desc="bench", disable=not progress or not todo, unit="pt")

    def done(row, f):
        f.write_text(json.dumps(row))
        rows.append(row)
        bar.update()

    classic = [t for t in todo if not t[0].name.startswith("aecodec")]
    ours = [t for t in todo if t[0].name.startswith("aecodec")]
    if classic and jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs) as pool:
            for row, t in zip(pool.imap(_task, [t[:3] for t in classic], chunksize=4), classic):
                done(row, t[3])
    else:
        for t in classic:
            done(measure(*t[:3]), t[3])
    if ours:  # in-process (the codec already uses every core); warm up caches before timing
        ours[0][0].decode(ours[0][0].encode(np.zeros((16, 16, 3), np.uint8)))
    for t in ours:
        done(measure(*t[:3]), t[3])
    bar.close()
    return rows


def aggregate(rows: list[dict]) -> dict[str, dict]:
    """codec -> CompressAI-style results (averaged over images per operating point)."""
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["codec"]][float(r["param"])].append(r)
    out = {}
    for codec, points in by.items():
        res = defaultdict(list)
        for param in sorted(points, key=lambda p: np.mean([r["bpp"] for r in points[p]])):
            pts = points[param]
            res["bpp"].append(float(np.mean([r["bpp"] for r in pts])))
            res["psnr-rgb"].append(float(np.mean([r["psnr"] for r in pts])))
            res["ms-ssim-rgb"].append(float(np.mean([r["ms_ssim"] for r in pts])))
            res["encoding_time"].append(float(np.mean([r["encode_s"] for r in pts])))
            res["decoding_time"].append(float(np.mean([r["decode_s"] for r in pts])))
            res["param"].append(param)
        out[codec] = dict(res)
    return out


def _msssim_db(v):
    v = np.asarray(v, float)
    return -10 * np.log10(np.clip(1 - v, 1e-12, None))


def bd_table(curves: dict[str, dict], rate_range=(0.1, 1.5), reference: dict | None = None) -> str:
    lines = [f"BD-rate in % (negative = fewer bits than the anchor for the same quality), over "
             f"{rate_range[0]}-{rate_range[1]} bpp; MS-SSIM measured in dB. Anchors: JPEG 4:2:0, "
             f"JPEG 2000, and AVIF at its strongest for PSNR ({AVIF_PSNR}).", "",
             "| codec | PSNR vs JPEG | PSNR vs JPEG 2000 | PSNR vs AVIF | MS-SSIM vs JPEG | "
             "MS-SSIM vs JPEG 2000 | MS-SSIM vs AVIF |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def fmt(x):
        return "n/a" if not np.isfinite(x) else f"{x:+.1f}"

    def row(name, c):
        cells = []
        for metric in ("psnr-rgb", "ms-ssim-rgb"):
            for anchor in ANCHORS:
                if anchor not in curves or metric not in c:
                    cells.append(float("nan"))
                    continue
                a = curves[anchor]
                conv = _msssim_db if metric == "ms-ssim-rgb" else np.asarray
                cells.append(bd_rate(a["bpp"], conv(a[metric]), c["bpp"], conv(c[metric]), rate_range))
        lines.append(f"| {name} | " + " | ".join(fmt(x) for x in cells) + " |")

    for name in sorted(curves, key=lambda n: (not n.startswith("aecodec"), n)):
        row(name, curves[name])
    for name, c in sorted((reference or {}).items()):
        row(f"{name} (published)", c)
    return "\n".join(lines) + "\n"


def load_reference(folder) -> dict[str, dict]:
    out = {}
    for f in sorted(Path(folder).glob("*.json")):
        try:
            d = json.loads(f.read_text())
            res = d["results"]
            c = {"bpp": res["bpp"], "psnr-rgb": res.get("psnr-rgb", res.get("psnr"))}
            if "ms-ssim-rgb" in res or "ms-ssim" in res:
                c["ms-ssim-rgb"] = res.get("ms-ssim-rgb", res.get("ms-ssim"))
            out[f.stem] = c
        except (ValueError, KeyError, TypeError):
            continue
    return out


def frontier(bpp, quality) -> tuple[list, list]:
    """The points of a curve that a cheaper point does not match or beat in quality, sorted by
    rate: a codec's own settings can cost more bits for no better picture (a "sideways kink")."""
    order = np.argsort(np.asarray(bpp, float), kind="stable")
    out_b, out_q, best = [], [], -np.inf
    for i in order:
        if np.isfinite(quality[i]) and quality[i] > best:
            out_b.append(bpp[i])
            out_q.append(quality[i])
            best = quality[i]
    return out_b, out_q


def plot(curves: dict[str, dict], path: Path, reference: dict | None = None, title: str = "the benchmark images") -> None:
    """rd.png (`figure`)."""
    import matplotlib.pyplot as plt

    fig = figure(curves, reference, title)
    buf = __import__("io").BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue(), force=True)


def figure(curves: dict[str, dict], reference: dict | None = None, title: str = "the benchmark images"):
    """PSNR and MS-SSIM against bpp, 0-2 bpp; each curve is its frontier (`frontier`); the legend
    runs below the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = plt.cm.tab20.colors  # more curves than the default 10-colour cycle has colours
    ours = sorted(n for n in curves if n.startswith("aecodec"))
    theirs = sorted(n for n in curves if not n.startswith("aecodec"))
    entries = len(ours) + len(theirs) + len(reference or {})
    columns = 3
    legend_rows = -(-entries // columns)
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.2 + 0.2 * legend_rows))
    for ax, metric, label in ((axes[0], "psnr-rgb", "PSNR (dB, RGB)"),
                              (axes[1], "ms-ssim-rgb", "MS-SSIM (dB)")):
        def draw(c, **style):
            if metric not in c or c[metric] is None:
                return
            y = list(_msssim_db(c[metric]) if metric == "ms-ssim-rgb" else np.asarray(c[metric], float))
            ax.plot(*frontier(list(c["bpp"]), y), **style)

        for i, name in enumerate(theirs):
            draw(curves[name], marker="o", ms=3, lw=1.4, color=palette[(2 * i) % 20], label=name)
        for i, name in enumerate(ours):  # aecodec in black, thick; other k dashed
            draw(curves[name], marker="o", ms=3, lw=2.6, color="black", ls="-" if i == 0 else "--", label=name)
        for i, (name, c) in enumerate(sorted((reference or {}).items())):
            draw(c, ls=":", lw=1, alpha=0.7, color=palette[(2 * i + 1) % 20], label=f"{name} (published)")
        ax.set_xlim(0, 2.0)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(22, 44)
    axes[1].set_ylim(6, 26)
    handles, labels = axes[0].get_legend_handles_labels()
    bottom = (0.75 + 0.2 * legend_rows) / (6.2 + 0.2 * legend_rows)  # inches of legend over the figure's
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=columns, frameon=False)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=bottom, wspace=0.18)
    fig.suptitle(f"Rate-distortion on {title}")
    return fig


def quality_table(curves: dict[str, dict]) -> str:
    """Per operating point of each aecodec curve: bpp, PSNR, MS-SSIM and seconds per image."""
    lines = []
    for name in sorted(n for n in curves if n.startswith("aecodec")):
        c = curves[name]
        lines += [f"{name}, averages per image:", "| quality | bpp | PSNR (dB) | MS-SSIM (dB) | encode s | decode s |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for q, b, p, m, e, d in sorted(zip(c["param"], c["bpp"], c["psnr-rgb"], _msssim_db(c["ms-ssim-rgb"]),
                                           c["encoding_time"], c["decoding_time"])):
            lines.append(f"| {q:g} | {b:.4f} | {p:.2f} | {m:.2f} | {e:.2f} | {d:.2f} |")
        lines.append("")
    return "\n".join(lines)


def gap_table(curves: dict[str, dict], anchors=("JPEG 2000", AVIF_PSNR)) -> str:
    """Per operating point of each aecodec curve: its PSNR minus each anchor's at the same bpp
    (interpolated on the anchor's curve; n/a beyond the anchor's points)."""
    lines = []
    present = [a for a in anchors if a in curves]
    for name in sorted(n for n in curves if n.startswith("aecodec")):
        c = {k: np.asarray(v, float) for k, v in curves[name].items() if k in ("param", "bpp", "psnr-rgb")}
        lines += [f"{name}: PSNR difference to each anchor at the same bpp (dB; positive = better):",
                  "| quality | bpp | PSNR (dB) | " + " | ".join(f"vs {a}" for a in present) + " |",
                  "| ---: | ---: | ---: |" + " ---: |" * len(present)]
        gaps = [c["psnr-rgb"] - psnr_at(curves[a]["bpp"], curves[a]["psnr-rgb"], c["bpp"]) for a in present]
        for i in np.argsort(c["bpp"]):
            cells = " | ".join("n/a" if not np.isfinite(g[i]) else f"{g[i]:+.2f}" for g in gaps)
            lines.append(f"| {c['param'][i]:g} | {c['bpp'][i]:.3f} | {c['psnr-rgb'][i]:.2f} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def write_outputs(rows, outdir: Path, reference: dict | None, rate_range, codecs=(), title: str | None = None,
                  wide_range=WIDE_RANGE) -> dict:
    """rd.csv, one CompressAI-format JSON per codec (with its exact settings and library
    versions), bd-rate.md and rd.png."""
    outdir.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["codec"], float(r["param"]), r["image"])):
        w.writerow({k: r[k] for k in FIELDS})
    atomic_write_bytes(outdir / "rd.csv", buf.getvalue().encode(), force=True)
    curves = aggregate(rows)
    for name, res in curves.items():
        slug = _slug(name)
        doc = {"name": name, "description": f"{name}, measured by aecodec bench",
               "results": {k: v for k, v in res.items()}}
        codec = next((c for c in codecs if c.name == name), None)
        if codec is not None and codec.library():
            doc["settings"], doc["library"] = codec.settings(), codec.library()
        atomic_write_bytes(outdir / f"{slug}.json", (json.dumps(doc, indent=2) + "\n").encode(), force=True)
    table = bd_table(curves, rate_range, reference)
    if wide_range and tuple(wide_range) != tuple(rate_range):  # the high-fidelity end too, measured codecs only
        table += "\n" + bd_table(curves, wide_range) + "\n" + gap_table(curves)
    atomic_write_bytes(outdir / "bd-rate.md", table.encode(), force=True)
    images = len({r["image"] for r in rows})
    plot(curves, outdir / "rd.png", reference, title or f"{images} images")
    return curves


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="aecodec bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run_from_args(ap.parse_args(argv))


def run_from_args(args) -> int:
    names = {c.strip() for c in args.codecs.split(",") if c.strip()}
    unknown = names - set(CODECS)
    if unknown:
        raise AecError(f"unknown codec(s): {', '.join(sorted(unknown))}")
    codecs = classic_codecs(tuple(names), quick=args.quick)
    if "aecodec" in names:
        try:
            qs = [int(q) for q in args.qualities.split(",")]
            ks = [None] + [int(k) for k in args.k.split(",") if k.strip()]
            efforts = [int(e) for e in args.efforts.split(",") if e.strip()]
        except ValueError:
            raise AecError("--qualities, --k and --efforts take comma-separated integers") from None
        bad = [e for e in efforts if not 1 <= e <= MAX_EFFORT]
        if bad:
            raise AecError(f"--efforts takes efforts 1..{MAX_EFFORT} (effort 0 is the default curve), got {bad[0]}")
        if args.quick:
            qs = qs[::3]
        codecs += aec_codecs(qs, ks, args.device, efforts)
    reference = load_reference(args.reference) if args.reference else None
    rows = run(args.directory, args.output, codecs, jobs=args.jobs, crop=256 if args.quick else None,
               max_images=2 if args.quick else None, progress=not args.no_progress)
    images = len({r["image"] for r in rows})
    name = Path(args.directory).resolve().name
    curves = write_outputs(rows, Path(args.output), reference, tuple(args.bd_range), codecs,
                           title=f"{name} ({images} image{'s' if images != 1 else ''}{', 256x256 crops' if args.quick else ''})")
    print((Path(args.output) / "bd-rate.md").read_text())
    print(quality_table(curves))
    out = Path(args.output)
    print(f"files in {out}/: rd.csv (every image and point), bd-rate.md (the table above), rd.png (the curves), "
          f"{', '.join(sorted(p.name for p in out.glob('*.json')))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
