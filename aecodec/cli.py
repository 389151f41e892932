"""The `aecodec` command: compress, decompress, info, bench, train, export.

Exit codes: 0 success, 1 bad input or I/O error (one line on stderr, no traceback), 2 usage error.
"""
from __future__ import annotations

import argparse
import sys

from .codec.config import EFFORT_STEPS, MAX_EFFORT, QUALITIES
from .errors import AecError
from .train.config import CALIBRATION_IMAGES

EXAMPLES = """examples:
  aecodec compress photo.png                 # writes photo.aec (quality 4)
  aecodec decompress photo.aec               # writes photo.decoded.png (never your photo.png)
  aecodec compress photo.png -q 7 -o hi.aec  # higher quality, more bytes
  aecodec decompress hi.aec -o hi.tif        # any format Pillow writes, by extension
  aecodec compress *.png -o aec/             # into a folder (created), one call: the model loads once
  aecodec decompress aec/*.aec -o png/       # png/NAME.png for each
  aecodec info photo.aec hi.aec              # header fields, no decoding
  cat a.png | aecodec compress - -o - > a.aec
  aecodec bench ~/photos -o my-bench         # rate-distortion against JPEG, JPEG 2000, AVIF, ...
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line + exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _quality(text: str) -> int | float:
    try:
        q = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"quality must be a number 1..{QUALITIES}, got {text!r}") from None
    if not 1 <= q <= QUALITIES:
        raise argparse.ArgumentTypeError(f"quality must be 1..{QUALITIES}, got {text}")
    return int(q) if q.is_integer() else q


def _level(text: str) -> int:
    q = _quality(text)
    if not isinstance(q, int):
        raise argparse.ArgumentTypeError(f"expected a quality level 1..{QUALITIES}, got {text}")
    return q


_UNITS = {"": 1, "b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1000 ** 2, "m": 1000 ** 2, "mib": 1024 ** 2}


def _size(text: str) -> int:
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 40000, 40KB, 39KiB or 1.5MB, got {text!r}")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1 byte, got {text!r}")
    return n


def _positive(cast):
    """argparse type: a positive, finite int or float."""
    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if cast is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not 0 < v < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
        return v
    return parse


_positive_int, _positive_float = _positive(int), _positive(float)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="aecodec", description="aecodec: a learned image codec (autoencoder + "
                "k-sparse latent + entropy coding).", epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    p.add_argument("--version", action="version", version=f"aecodec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("compress", help="image -> .aec bitstream",
                       description="Compress images (any format Pillow reads) into .aec files. With several "
                       "inputs, a file that fails is reported by name and the others still run; the exit "
                       "status is 1 if any failed. Nothing is overwritten without -f, and no partial "
                       "file is ever left behind.")
    c.add_argument("input", nargs="+", help="input images (any format Pillow reads), or - for stdin")
    c.add_argument("-o", "--output", help="output file; or a folder (created if missing) when it ends with / "
                   "or is a directory, and always with several inputs; default: each INPUT with suffix .aec; "
                   "- for stdout")
    c.add_argument("-q", "--quality", type=_quality, default=None,
                   help="quality 1 (smallest) .. 8 (best), default 4; values in between (e.g. 4.5, "
                   "steps of 1/256) interpolate the levels")
    c.add_argument("--effort", type=int, choices=range(0, MAX_EFFORT + 1), default=0, metavar="N",
                   help="0 (default): one fast pass. 1..3: refine the latents of this image by gradient "
                   f"descent ({'/'.join(str(EFFORT_STEPS[e]) for e in range(1, MAX_EFFORT + 1))} steps; ~0.3 s per step "
                   "for a 768x512 photo on 2 CPU cores with bf16 instructions, 0.6 s without) for "
                   "a better file at the same size (~11-15 %% fewer bits for the same PSNR); works with the "
                   "targets too (2-3 refinements); decodes with any aecodec")
    target = c.add_mutually_exclusive_group()
    target.add_argument("--size", type=_size, help="target file size (e.g. 40KB, 39KiB, 40000): the "
                        "highest quality whose file is not larger")
    target.add_argument("--bpp", type=_positive_float, help="target bits per pixel: the highest quality "
                        "whose file is not larger")
    target.add_argument("--psnr", type=_positive_float, help="target PSNR in dB: the smallest file that "
                        "reaches it")
    c.add_argument("--k", type=_positive_int, default=None,
                   help="channels kept per latent position (1..192; default: the model's default for the quality)")
    c.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the transforms run: auto (default) takes cuda if available, else the CPU engine "
                   "fastest for the job (bf16 through OpenVINO for large jobs where installed and the CPU has "
                   "bf16 instructions); cpu: always the float32 engine")
    c.add_argument("--drop-alpha", action="store_true",
                   help="allow images with transparency: the alpha channel is discarded")
    c.add_argument("--reduce-depth", action="store_true",
                   help="allow 16-bit/float images: they are reduced to 8 bits per channel")
    c.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    c.add_argument("--quiet", action="store_true", help="print nothing on success")

    d = sub.add_parser("decompress", help=".aec bitstream -> image",
                       description="Decode .aec files to images; the format follows the output extension "
                       "(PNG by default, written with fast compression: zlib level 1). Lossy formats (.jpg, .webp, "
                       ".avif) are re-encoded at quality 95, with a note: write .png to keep the decoded pixels "
                       "exactly.")
    d.add_argument("input", nargs="+", help="input .aec files, or - for stdin")
    d.add_argument("-o", "--output", help="output image (its extension picks the format); or a folder "
                   "(created if missing, NAME.png inside) when it ends with / or is a directory, and always with "
                   "several inputs; default: INPUT's stem + .decoded.png beside it (never the image it was made "
                   "from); - for PNG on stdout")
    d.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the synthesis transform runs: auto (default) takes cuda if available, else the "
                   "CPU engine fastest for the job; cpu: always the float32 engine (pixels that never "
                   "depend on the job)")
    d.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    d.add_argument("--quiet", action="store_true", help="print nothing on success")

    i = sub.add_parser("info", help="show the header of .aec files",
                       description="Print the header fields of .aec files without decoding them: in rows for "
                       "one file, one line per file for several.")
    i.add_argument("input", nargs="+", help="input .aec files, or - for stdin")

    b = sub.add_parser("bench", help="rate-distortion benchmark (aecodec vs JPEG, JPEG 2000, ...)",
                       description="Rate-distortion benchmark over a folder of images: aecodec against the "
                       "classic codecs, with BD-rates, tables and plots. `aecodec bench kernels [--help]` "
                       "times the Triton kernel instead (needs a GPU).")
    from .bench.rd_args import add_arguments

    add_arguments(b)

    m = sub.add_parser("demo", help="compress + decompress the bundled sample photo",
                       description="Round-trip the sample photo shipped with the package (kodim23) at "
                       "every quality and print size, bpp, PSNR and time.")
    m.add_argument("-q", "--quality", type=_level, help="only this quality (default: all 8)")
    m.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")

    t = sub.add_parser("train", help="train (start or resume) a run; evaluate it on validation images",
                       description="Start or resume a training run. A run lives in a fixed directory "
                       "outside the repository (default ~/.cache/aecodec/runs/NAME, or $AECODEC_RUNS/NAME) "
                       "holding its whole state, written atomically every few minutes; SIGTERM or Ctrl-C "
                       "saves and exits cleanly. A new run starts from the shipped default model unless "
                       "--init says otherwise. Recipe flags given on a resume change the stored recipe. Runs under "
                       "torchrun (DistributedDataParallel) as they are: `torchrun --nproc_per_node=N -m aecodec "
                       "train ...`; the global batch is then N x --batch.")
    # positional, not --run: torchrun's own parser would take "--run" for its --run-path
    t.add_argument("run", nargs="?", default="main",
                   help="run name (under the runs directory) or a directory path; default main")
    t.add_argument("--data", help="training folder (validation images are carved out of it by a fixed rule); "
                   "new runs need it, or $AECODEC_TRAIN_DATA; a resumed run keeps its own")
    t.add_argument("--init", help="new runs only: exported weights, a run state file, a shipped model "
                   "name, or 'scratch' (default: the shipped default model); with --evaluate: the model "
                   "to evaluate instead of the run")
    t.add_argument("--family", help="new runs only: the entropy model family (hyperprior, mean-scale, "
                   "checkerboard, channel-checkerboard); a source of an earlier family grows into it with its coding unchanged "
                   "(default: from --means/--context and the source)")
    t.add_argument("--means", action=argparse.BooleanOptionalAction, default=None,
                   help="new runs only: mean-scale hyperprior, h_s also predicts integer means (default: on)")
    t.add_argument("--context", action=argparse.BooleanOptionalAction, default=None,
                   help="new runs only: checkerboard context (He et al. 2021) on the mean-scale hyperprior; "
                   "a source without one gets it with a zero correction, so coding starts unchanged (default: as the "
                   "source: a model with a context keeps it, one without stays without)")
    t.add_argument("--widen", metavar="T=WIDTH[,...]",
                   help="new runs only: give these transforms' hidden layers more channels (g_a, g_s, h_a, h_s; "
                        "e.g. 'g_s=192'), grown so that the model computes exactly what the source did and the "
                        "new channels learn (more capacity for the high rates, at more cost per pixel)")
    t.add_argument("--integer-bits", metavar="W,A",
                   help="new runs only: train the entropy networks (h_s, the context) as the integer networks they "
                        "are coded with, W-bit weights and A-bit activations (e.g. '8,9': exact in float32, twice as "
                        "fast to code); exponents calibrated once at the start, kept by exports (default: float "
                        "networks, calibrated at 12 bits by each export)")
    t.add_argument("--train-only", metavar="PREFIXES",
                   help="new runs only: train only parameters whose names start with one of these "
                   "comma-separated prefixes (e.g. 'context.'); the rest stay as loaded")
    t.add_argument("--minutes", type=float, help="stop (and save) after this many minutes (default: until stopped)")
    t.add_argument("--steps", type=_positive_int, help="stop after this many more steps")
    t.add_argument("--evaluate", action="store_true",
                   help="evaluate the run's EMA weights on the validation set (bpp/PSNR per quality, "
                   "BD-rate vs JPEG 2000) and exit")
    t.add_argument("--batch", type=_positive_int, help="crops per step (new runs: 8)")
    t.add_argument("--crop", type=_positive_int, help="crop side in pixels (new runs: 128)")
    t.add_argument("--lr", type=float, help="learning rate, constant (new runs: 2e-4)")
    t.add_argument("--ema-decay", type=float, help="decay of the weight EMA (new runs: 0.999)")
    t.add_argument("--k-min", type=_positive_int, help="smallest k drawn in training (new runs: 32)")
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast for the convolutions between g_a/g_s's GDNs on the CPU (g_a's first and last "
                   "layers, g_s's last layer and every GDN stay float32): ~1.4x the steps of float32, its gradient error within the "
                   "minibatch noise (new runs: on; docs/training.md)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile g_a and g_s on the CPU: ~1.3x the steps, the same gradient, ~30 s to "
                   "compile at every start (default: on)")
    t.add_argument("--threads", type=int, help="torch threads, 0 = all cores (new runs: 0)")
    t.add_argument("--seed", type=int, help="new runs: seed of the data and noise generators (0)")
    t.add_argument("--device", default="auto",
                   help="auto (cuda if available), cpu, cuda or cuda:N; under torchrun each rank takes "
                   "cuda:LOCAL_RANK")
    t.add_argument("--save-minutes", type=float, default=5.0, help="minutes between state saves (default 5)")
    t.add_argument("--log-seconds", type=float, default=60.0, help="seconds between log lines (default 60)")
    t.add_argument("--quiet", action="store_true")

    e = sub.add_parser("export", help="training run -> shipped safetensors weights",
                       description="Export a run's EMA weights (or a weights file) to the format the "
                       "package ships: its entropy networks as integer networks calibrated on validation images "
                       "(exact on every device), and the default k per quality chosen on them.")
    e.add_argument("source", help="run name, run directory, run state file or weights file")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--name", help="model name recorded in the weights and in every .aec file "
                   "(default: from the architecture, e.g. aec-msh-128-192 for a mean-scale N=128 M=192 model)")
    e.add_argument("--default-k", help="default k per quality, comma-separated (one value for all), "
                   "or 'auto' (default): chosen on validation images")
    e.add_argument("--data", help="training folder whose validation images calibrate the integer entropy networks "
                   "and choose k (default: the run's)")
    e.add_argument("--k-images", type=_positive_int, default=CALIBRATION_IMAGES,
                   help="validation images used to calibrate and to choose k")
    e.add_argument("--register", action="store_true",
                   help="also record name, file and SHA-256 in manifest.json beside the output")
    e.add_argument("-f", "--force", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Library chatter is not for users of the command; aecodec's own notes come as AecWarning.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["bench", "kernels"]:  # a benchmark of its own, with its own options
        from .bench.kernels import main as kernels_main

        return kernels_main(argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "compress":
            from .commands import cmd_compress as run
        elif args.command == "decompress":
            from .commands import cmd_decompress as run
        elif args.command == "info":
            from .commands import cmd_info as run
        elif args.command == "bench":
            from .commands import cmd_bench as run
        elif args.command == "demo":
            from .commands import cmd_demo as run
        elif args.command == "train":
            from .train.commands import cmd_train as run
        else:
            from .train.commands import cmd_export as run
        return run(args) or 0
    except AecError as e:
        print(f"aecodec: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:  # a light install (README, "Install"): say what is missing
        print(f"aecodec: error: {args.command} needs the Python package {e.name!r}, which is not installed",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aecodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `aecodec info x.aec | head -1`: the reader left, nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# Commands that are done once main() returns: every output written, closed and renamed into place.
ONE_SHOT = frozenset({"compress", "decompress", "info"})


def run() -> None:
    """The `aecodec` command (and `python -m aecodec`): main(), then the exit. After a one-shot
    command the interpreter's own teardown (clearing ~340 modules, its final garbage collections
    over the coder's tables) took ~50-100 ms of a ~0.7 s call on a 2-core Zen 4
    (docs/performance.md); with its files closed and stdout flushed there is nothing left for it
    to do, so the process ends there."""
    argv = sys.argv[1:]
    rc = main(argv)
    if argv[:1] and argv[0] in ONE_SHOT:
        import os

        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a reader that left, a closed stream: the usual exit says so
            sys.exit(rc)
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    run()
