"""Where a model loses, per quality: `python tools/diagnose.py MODEL SET [...]`.

For each quality level, on the images of SET (a folder, or `validation`: the training folder's
held-out images, by the run's rule), through the real coder (numpy engine):
- bpp and PSNR at the model's default k and at k = M (what the k-sparse gate costs);
- the transforms' own ceiling at that quality: g_s(g_a(x) * gain * inverse gain), no gate, no
  rounding (what capacity allows; the distance from it is quantization);
- JPEG 2000's and AVIF 4:4:4 tune=psnr's PSNR at the same bpp, and the bits they need for the
  same PSNR (measured here on the same images with the benchmark's settings, cached in --cache).
The report (markdown) reads off which of capacity, gate, entropy model or training limits each
quality. MODEL: a shipped name, a weights file or a run state (its EMA weights).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from aecodec.bench.bdrate import psnr_at
from aecodec.bench.codecs import AVIF_PSNR, AVIF_QUALITIES, J2K_BPPS, AvifCodec, Jpeg2000Codec
from aecodec.bench.metrics import psnr
from aecodec.imageio import list_images

ROOT = Path(__file__).resolve().parents[1]


def load_set(name: str, data: str | None) -> list[tuple[str, np.ndarray]]:
    if name == "validation":
        from aecodec.train.data import validation_set

        if not data:
            raise SystemExit("diagnose: `validation` needs --data (the training folder)")
        return validation_set(data)
    out = []
    for p in list_images(name):
        with Image.open(p) as im:
            out.append((p.name, np.asarray(im.convert("RGB"))))
    return out


def anchor_curves(images, cache: Path) -> dict[str, dict]:
    """JPEG 2000 and AVIF (tune=psnr, 4:4:4) averaged per setting over the images; cached."""
    from aecodec.train.evaluate import images_digest

    f = cache / f"anchors-{images_digest(images)}.json"
    if f.exists():
        return json.loads(f.read_text())
    codecs = {"JPEG 2000": [Jpeg2000Codec("JPEG 2000", b) for b in J2K_BPPS],
              AVIF_PSNR: [AvifCodec(AVIF_PSNR, q, "4:4:4", 2, (("tune", "psnr"),)) for q in AVIF_QUALITIES]}
    curves = {}
    for name, settings in codecs.items():
        bpp, ps = [], []
        for codec in settings:
            b, p = [], []
            for _, rgb in images:
                data = codec.encode(Image.fromarray(rgb))
                b.append(len(data) * 8 / (rgb.shape[0] * rgb.shape[1]))
                p.append(psnr(np.asarray(codec.decode(data).convert("RGB")), rgb))
            bpp.append(float(np.mean(b)))
            ps.append(float(np.mean(p)))
        curves[name] = {"bpp": bpp, "psnr-rgb": ps}
    cache.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(curves))
    return curves


def rate_for(curve: dict, target_psnr: float) -> float:
    """The bpp a codec needs for a PSNR (log-linear between its points; NaN outside them)."""
    b, p = np.asarray(curve["bpp"], float), np.asarray(curve["psnr-rgb"], float)
    order = np.argsort(b)
    b, p = b[order], np.maximum.accumulate(p[order])
    if not p[0] <= target_psnr <= p[-1]:
        return float("nan")
    return float(np.exp(np.interp(target_psnr, p, np.log(b))))


def from_bench(results: Path, model_name: str, M: int) -> tuple[dict, dict]:
    """(coded rows without ceilings, anchors) from `aecodec bench ... --k M` results of this model."""
    def curve(name):
        return json.loads((results / name).read_text())

    aec, full = curve("aecodec.json"), curve(f"aecodec-k-{M}.json")
    if f"model {model_name} " not in aec.get("library", "") + " ":
        raise SystemExit(f"diagnose: {results}/aecodec.json was not measured with {model_name}")
    rows = []
    for i, q in enumerate(aec["results"]["param"]):
        rows.append({"quality": int(q), "bpp": aec["results"]["bpp"][i], "psnr": aec["results"]["psnr-rgb"][i],
                     "bpp_kM": full["results"]["bpp"][i], "psnr_kM": full["results"]["psnr-rgb"][i]})
    anchors = {"JPEG 2000": curve("jpeg-2000.json")["results"], AVIF_PSNR: curve("avif-444-tune-psnr.json")["results"]}
    return {"M": M, "rows": rows}, anchors


def measure(model_name: str, images, coded: dict | None = None) -> dict:
    """Per quality: coded bpp/PSNR at the default k and at k = M (unless `coded` has them), and
    the transforms' ceiling."""
    from aecodec.train.checkpoint import initial_model
    from aecodec.train.evaluate import autoencoder_psnr, code_image, coding_copy, coding_engine
    from aecodec.codec.weights import Weights

    model = coding_copy(initial_model(model_name))
    try:
        default_k = Weights.shipped(model_name).default_k
    except Exception:  # a file: its own default k, else the validation's fixed k
        from aecodec.train.evaluate import EVAL_K

        try:
            default_k = Weights.from_file(model_name).default_k
        except Exception:
            default_k = list(EVAL_K)
    engine, M = coding_engine(model), model.config.M
    rows = []
    for q in range(1, model.config.qualities + 1):
        row = {"quality": q, "k": default_k[q - 1]}
        if coded is not None:
            row.update(next(r for r in coded["rows"] if r["quality"] == q))
        for label, k in (("", default_k[q - 1]), ("_kM", M)) if coded is None else ():
            bpps, ps = [], []
            for _, rgb in images:
                size, out = code_image(engine, rgb, q, k)
                bpps.append(size * 8 / (rgb.shape[0] * rgb.shape[1]))
                ps.append(psnr(out, rgb))
            row["bpp" + label], row["psnr" + label] = float(np.mean(bpps)), float(np.mean(ps))
        row["ceiling"] = float(np.mean([autoencoder_psnr(model, rgb, q) for _, rgb in images]))
        rows.append(row)
        print(f"q{q}: {row}", file=sys.stderr, flush=True)
    return {"M": M, "rows": rows}


def report(title: str, measured: dict, anchors: dict) -> str:
    j2k, avif = anchors["JPEG 2000"], anchors[AVIF_PSNR]
    lines = [f"### {title}", "",
             "| q | k | bpp | PSNR | k = M: bpp / PSNR | ceiling | to ceiling | vs JPEG 2000 (dB / bits) | "
             "vs AVIF (dB / bits) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in measured["rows"]:
        cells = []
        for curve in (j2k, avif):
            d = r["psnr"] - psnr_at(curve["bpp"], curve["psnr-rgb"], [r["bpp"]])[0]
            need = rate_for(curve, r["psnr"])
            bits = (r["bpp"] / need - 1) * 100 if np.isfinite(need) else float("nan")
            cells.append(("n/a" if not np.isfinite(d) else f"{d:+.2f}") + " / " +
                         ("n/a" if not np.isfinite(bits) else f"{bits:+.0f} %"))
        lines.append(f"| {r['quality']} | {r['k']} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
                     f"{r['bpp_kM']:.3f} / {r['psnr_kM']:.2f} | {r['ceiling']:.2f} | "
                     f"{r['ceiling'] - r['psnr']:.2f} | {cells[0]} | {cells[1]} |")
    top = max(j2k["psnr-rgb"]), max(avif["psnr-rgb"])
    lines += ["", f"Anchors' top points here: JPEG 2000 {top[0]:.2f} dB, AVIF {top[1]:.2f} dB."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/diagnose.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a shipped model name, a weights file or a run state")
    ap.add_argument("set", help="an image folder, or `validation`")
    ap.add_argument("--data", help="the training folder (for `validation`)")
    ap.add_argument("--title", help="the report's heading (default: the set's name)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "aecodec" / "diagnose"),
                    help="where the anchors' curves are kept")
    ap.add_argument("--bench", help="the results folder of `aecodec bench SET --k M` with this model: take the "
                    "coded curves and the anchors from it and compute only the ceilings")
    ap.add_argument("-o", "--output", help="append the report to this markdown file")
    args = ap.parse_args(argv)
    images = load_set(args.set, args.data)
    if args.bench:  # coded curves and anchors from `aecodec bench SET --k M` of this model: ceilings only
        from aecodec.train.checkpoint import initial_model

        coded, anchors = from_bench(Path(args.bench), args.model, initial_model(args.model).config.M)
    else:
        coded, anchors = None, anchor_curves(images, Path(args.cache))
    text = report(args.title or f"{Path(args.set).name} ({len(images)} images), {Path(args.model).name}",
                  measure(args.model, images, coded), anchors)
    print(text)
    if args.output:
        with open(args.output, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
