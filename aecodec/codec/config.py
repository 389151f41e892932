"""The codec's constants: quality levels, coding limits, encoder effort. Torch-free (the numpy
engine and the entropy coder read them without importing torch); the architecture is spec.py."""
from __future__ import annotations

# CompressAI's lambdas for its 8 MSE quality levels (bmshj2018): distortion weight per quality.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
QUALITIES = len(LAMBDAS)
QUALITY_LEVELS = range(1, QUALITIES + 1)  # the integer levels; the format and API also take values between
Y_STRIDE = 16  # g_a downsamples by 16
PAD = 4 * Y_STRIDE  # and h_a by 4 more
SYMBOL_LIMIT = 1 << 14  # |latent symbol| bound; the encoder refuses inputs beyond it

# encoder effort -> gradient steps of latent refinement (refine.py; each: g_s forward + backward,
# ~0.6 s for a 768x512 image on 2 CPU cores); on validation crops the real cost stops improving
# at ~300 steps (docs/performance.md)
EFFORT_STEPS = {0: 0, 1: 40, 2: 100, 3: 300}
MAX_EFFORT = max(EFFORT_STEPS)
