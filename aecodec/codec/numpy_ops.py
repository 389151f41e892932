"""The codec's layers for inference in numpy, on (H, W, C) arrays: convolutions as im2col + matrix
products (numpy's BLAS, all cores), the stride-2 transposed convolution as its four output phases,
GDN, and the k-sparse gate. Torch-free, so a CLI call codes a file without importing torch.

Weights come in torch's layouts and are rearranged once (`conv_weights`, `deconv_weights`).
Column buffers are built a band of rows at a time and reused, which bounds memory and avoids
faulting in fresh pages for every band.

Both cores: each layer's output rows are split into one contiguous share per core, computed by a
thread each (numpy releases the GIL), with the BLAS kept to one thread meanwhile
(`one_blas_thread`). The copies, bias additions and GDN that numpy runs on one core are then
spread too: on two cores g_s takes ~35 % less time than one process-wide BLAS with two threads.
The shares depend only on the core count, so a given machine decodes the same pixels every time.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BAND = 1 << 20  # values per im2col band (4 MB in float32: fastest on this CPU of 1, 2, 4, 8, 16 M)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


WORKERS = _cores()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_inside = threading.local()  # set in a worker: nested calls run serially there
_blas = None


def in_parallel(n: int, body) -> None:
    """body(a, b) over [0, n) split into WORKERS contiguous shares, one thread each; each share
    writes only its own rows, so the result does not depend on scheduling."""
    global _pool
    workers = min(WORKERS, n)
    if workers <= 1 or getattr(_inside, "active", False):
        body(0, n)
        return
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="aecodec")

    def share(a, b):
        _inside.active = True
        try:
            body(a, b)
        finally:
            _inside.active = False

    bounds = [n * i // workers for i in range(workers + 1)]
    futures = [_pool.submit(share, bounds[i], bounds[i + 1]) for i in range(workers)]
    for f in futures:
        f.result()


@contextlib.contextmanager
def one_blas_thread():
    """The BLAS on one thread while the row shares run (they are the parallelism)."""
    global _blas
    if WORKERS <= 1:
        yield
        return
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        yield


def conv_weights(w: np.ndarray, dtype) -> np.ndarray:
    """torch Conv2d weight (O, C, k, k) -> the (k*k*C, O) matrix of `conv`."""
    o, c, k, _ = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(k * k * c, o), dtype=dtype)


def conv(x: np.ndarray, wm: np.ndarray, bias: np.ndarray, k: int, stride: int) -> np.ndarray:
    """Conv2d with padding k // 2 (as the model's): x (H, W, C) -> (ceil(H/s), ceil(W/s), O)."""
    h, w, c = x.shape
    p = k // 2
    ho, wo = -(-h // stride), -(-w // stride)
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    out = np.empty((ho, wo, wm.shape[1]), x.dtype)
    rows = max(1, min(ho, BAND // (wo * k * k * c)))

    def share(a, b):
        cols = np.empty((min(rows, b - a), wo, k, k, c), x.dtype)
        for r0 in range(a, b, rows):
            n = min(b, r0 + rows) - r0
            for dy in range(k):
                for dx in range(k):
                    cols[:n, :, dy, dx] = xp[stride * r0 + dy:stride * (r0 + n - 1) + dy + 1:stride,
                                             dx:dx + stride * (wo - 1) + 1:stride]
            band = out[r0:r0 + n].reshape(n * wo, -1)
            np.matmul(cols[:n].reshape(n * wo, -1), wm, out=band)
            band += bias

    in_parallel(ho, share)
    return out


def space_to_depth_weights(w: np.ndarray, dtype) -> np.ndarray:
    """A stride-2 5x5 Conv2d weight (O, C, 5, 5) -> the (9 * 4C, O) matrix of the same convolution
    as a 3x3 stride-1 one over 2x2 pixel blocks (`conv_space_to_depth`): block tap (t, u) and
    in-block position (py, px) is kernel tap (2t + py, 2u + px) (zero where that is 5)."""
    o, c = w.shape[:2]
    wp = np.zeros((o, c, 6, 6), w.dtype)
    wp[:, :, :5, :5] = w
    # (O, C, t, py, u, px) -> (t, u, py, px, C, O)
    m = wp.reshape(o, c, 3, 2, 3, 2).transpose(2, 4, 3, 5, 1, 0)
    return np.ascontiguousarray(m.reshape(9 * 4 * c, o), dtype=dtype)


def conv_space_to_depth(x: np.ndarray, wm: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The stride-2 5x5 convolution of an image with few channels (g_a's first layer): its im2col
    would copy 3 values at a time; over 2x2 blocks it copies 12 (H and W even)."""
    h, w, c = x.shape
    blocks = x.reshape(h // 2, 2, w // 2, 2, c).transpose(0, 2, 1, 3, 4).reshape(h // 2, w // 2, 4 * c)
    return conv(blocks, wm, bias, 3, 1)


# The 5x5 stride-2 transposed convolution (padding 2, output padding 1) as four phases: output
# pixel (2m + r, 2n + s) sums inputs (m + t - 1, n + u - 1) through kernel tap (a, b) =
# (r + 4 - 2t, s + 4 - 2u), t, u in 0..2; taps outside the 5x5 kernel are zero.
POLYPHASE_TAPS = [(r, s, t, u, r + 4 - 2 * t, s + 4 - 2 * u)
                  for r in range(2) for s in range(2) for t in range(3) for u in range(3)
                  if r + 4 - 2 * t < 5 and s + 4 - 2 * u < 5]


def deconv_weights(w: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """torch ConvTranspose2d weight (C, O, 5, 5) -> its polyphase form for `deconv`: for output
    rows of parity r = 0 and r = 1, the matrix taking a 3x3 neighbourhood column (t, u, C; r = 1
    needs only t = 1, 2) to both column parities s at once: (9C or 6C, 2 * O)."""
    c, o = w.shape[:2]
    ph = np.zeros((2, 3, 3, c, 2, o), dtype)  # (r, t, u, C, s, O)
    for r, s, t, u, a, b in POLYPHASE_TAPS:
        ph[r, t, u, :, s] = w[:, :, a, b]
    return (np.ascontiguousarray(ph[0].reshape(9 * c, 2 * o)),
            np.ascontiguousarray(ph[1, 1:].reshape(6 * c, 2 * o)))


def deconv(x: np.ndarray, phases: tuple[np.ndarray, np.ndarray], bias: np.ndarray, then=None) -> np.ndarray:
    """The 5x5 stride-2 transposed convolution: x (H, W, C) -> (2H, 2W, O). then: applied in place
    to each band of finished output rows (rows, W, O) while it is still in cache (the GDN that
    follows in g_s)."""
    h, w, c = x.shape
    even, odd = phases
    o = even.shape[1] // 2
    if o <= 16:
        out = _deconv_few_outputs(x, even, odd, bias)
        return out if then is None else then(out)
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.empty((h, 2, w, 2, o), x.dtype)  # (m, r, n, s, O) is (2m + r, 2n + s, O)
    rows = max(1, min(h, BAND // (w * 9 * c)))
    bias2 = np.concatenate([bias, bias]).astype(x.dtype)  # both column parities s

    def share(a, b):
        cols = np.empty((min(rows, b - a), w, 3, 3, c), x.dtype)
        prod = np.empty((min(rows, b - a) * w, 2 * o), x.dtype)
        for r0 in range(a, b, rows):
            n = min(b, r0 + rows) - r0
            for t in range(3):
                for u in range(3):
                    cols[:n, :, t, u] = xp[r0 + t:r0 + n + t, u:u + w]
            flat = cols[:n].reshape(n * w, 9 * c)
            for r, (mat, m) in enumerate(((even, flat), (odd, flat[:, 3 * c:]))):
                np.matmul(m, mat, out=prod[:n * w])
                prod[:n * w] += bias2
                out[r0:r0 + n, r] = prod[:n * w].reshape(n, w, 2, o)
            if then is not None:
                then(out[r0:r0 + n].reshape(2 * n, 2 * w, o))

    in_parallel(h, share)
    return out.reshape(2 * h, 2 * w, o)


def _deconv_few_outputs(x, even, odd, bias):
    """deconv for few output channels (g_s's last layer, 3): one matrix product per input pixel
    to all 3x3 taps and 4 phases, then the shifted sums (an im2col would dominate the time)."""
    h, w, c = x.shape
    o = even.shape[1] // 2
    taps = np.zeros((c, 3, 3, 2, 2, o), x.dtype)  # (C, t, u, r, s, O)
    taps[:, :, :, 0] = even.reshape(3, 3, c, 2, o).transpose(2, 0, 1, 3, 4)
    taps[:, 1:, :, 1] = odd.reshape(2, 3, c, 2, o).transpose(2, 0, 1, 3, 4)
    taps = taps.reshape(c, -1)
    out = np.empty((h, 2, w, 2, o), x.dtype)
    rows = max(1, min(h, BAND // (w * taps.shape[1])))

    def share(a, b):
        for r0 in range(a, b, rows):
            r1 = min(b, r0 + rows)
            a0, a1 = max(0, r0 - 1), min(h, r1 + 1)  # input rows reaching output rows r0..r1
            prod = (x[a0:a1].reshape(-1, c) @ taps).reshape(a1 - a0, w, 3, 3, 2, 2, o)
            acc = np.zeros((r1 - r0 + 2, w + 2, 2, 2, o), x.dtype)  # output rows r0-1.., cols -1..
            for t in range(3):
                for u in range(3):
                    # input row i reaches output row i - t + 1, at acc row i - t + 2 - r0
                    lo, hi = a0 - t + 2 - r0, a1 - t + 2 - r0
                    s0, s1 = max(lo, 0), min(hi, r1 - r0 + 2)
                    acc[s0:s1, 2 - u:2 - u + w] += prod[s0 - lo:s1 - lo, :, t, u]
            out[r0:r1] = acc[1:r1 - r0 + 1, 1:w + 1].transpose(0, 2, 1, 3, 4)
            out[r0:r1] += bias

    in_parallel(h, share)
    return out.reshape(2 * h, 2 * w, o)


def gdn_parameters(beta, beta_bound, beta_pedestal, gamma, gamma_bound, gamma_pedestal):
    """CompressAI's non-negative reparametrisation (max(v, bound)^2 - pedestal) -> (beta, gamma.T)."""
    beta = np.maximum(beta, beta_bound) ** 2 - beta_pedestal
    gamma = np.maximum(gamma, gamma_bound) ** 2 - gamma_pedestal
    return beta.astype(np.float32), np.ascontiguousarray(gamma.T, dtype=np.float32)


def gdn(x: np.ndarray, beta: np.ndarray, gamma_t: np.ndarray, inverse: bool, block: int = 4096) -> np.ndarray:
    """GDN (x / sqrt(beta + gamma x^2)) or its inverse (x * sqrt(...)) over channels, in place,
    a block of pixels at a time (the block stays in cache between the steps)."""
    rows = x.reshape(-1, x.shape[-1])

    def share(lo, hi):
        square = np.empty((min(block, hi - lo), rows.shape[1]), x.dtype)
        norm = np.empty_like(square)
        for a in range(lo, hi, block):
            xb = rows[a:min(hi, a + block)]
            nb = norm[:xb.shape[0]]
            np.square(xb, out=square[:xb.shape[0]])
            np.matmul(square[:xb.shape[0]], gamma_t, out=nb)
            nb += beta
            np.sqrt(nb, out=nb)
            if inverse:
                xb *= nb
            else:
                xb /= nb

    in_parallel(rows.shape[0], share)
    return x


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def topk_mask(a: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest of a (P, C) along C per row, ties to the lowest index:
    the reference gate's rule (kernels/reference.py)."""
    p, c = a.shape
    if k >= c:
        return np.ones(a.shape, bool)
    if k <= 0:
        return np.zeros(a.shape, bool)
    kth = np.partition(a, c - k, axis=1)[:, c - k:c - k + 1]  # the k-th largest per row
    mask = a > kth
    ties = a == kth
    need = k - mask.sum(axis=1, keepdims=True)
    return mask | (ties & (np.cumsum(ties, axis=1) <= need))


def gate_quantize(y: np.ndarray, k: int) -> np.ndarray:
    """k-sparse gate + rounding (half to even) of float32 latents (..., C), as the reference."""
    flat = y.reshape(-1, y.shape[-1])
    keep = topk_mask(np.abs(flat), k)
    return np.where(keep, np.round(flat), np.float32(0)).astype(np.float32).reshape(y.shape)
