"""What every event model shares (the event-model contract); a backbone supplies the rest.

A backbone (EventSSM, the Spike-Driven Transformer, ...) supplies only:
  - its config class (an `EventModelConfig` subclass, eventlm/configuration_events.py: `model_type`, its
    own fields, `total_stride` where it pools);
  - a Flax module `Backbone(config, dtype)(input_ids, time_deltas, attention_mask, train, output_hidden_states)`
    returning a `BackboneOutput` (hidden states at its output resolution, their mask and Δt, the event
    embeddings, the total time);
  - its optimizer parameter groups (`param_groups`, default: every parameter "regular");
  - its streaming step (`streamer_class`, see eventlm.streaming).
Everything else is here, written once: time gaps from integer µs timestamps, host-side input checks, the
output classes, the masked readout, the classification head and loss, the next-event head (token + a
log-normal mixture over the gap) with its loss and sampling, the flax modules of the three task models
(`EventModelModule`, `SequenceClassificationModule`, `NextEventPredictionModule`, parameterised by the
backbone class) and the model base class `FlaxEventPreTrainedModel` (checks, the jitted call, streaming
and generation through eventlm.streaming). Adding a model = one folder + one line in eventlm/auto.py.

The shared config fields read here are EventModelConfig's.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .modeling_flax_utils import FlaxPreTrainedModel, ModelOutput

# The next-event head's log-normal gap scales log σ are clipped to this range in every path that computes
# them (full forward, training loss, streaming, generation): one distribution, trained and sampled.
GAP_LOG_SCALE_RANGE = (-12.0, 5.0)
# The variables subtree of each task's head (shared by every backbone): what a saved model's weights hold.
HEAD_NAMES = {"classification": "classifier", "next-event": "next_event_head"}


# ================================================================================================
# Time: gaps before each event
# ================================================================================================


def is_traced(x) -> bool:
    """True for abstract values inside jit / grad / vmap (host-side checks must skip them)."""
    return isinstance(x, jax.core.Tracer)


def valid_mask(attention_mask, shape) -> Any:
    """Prefix mask (B, L) bool from attention_mask: the first sum(mask) events of each row are valid."""
    xp = jnp if is_traced(attention_mask) else np
    if attention_mask is None:
        return np.ones(shape, bool)
    lengths = xp.sum(xp.asarray(attention_mask) != 0, axis=-1)
    return xp.arange(shape[-1])[None, :] < lengths[:, None]


def compute_time_deltas(timestamps, attention_mask=None, time_unit_us: float = 1000.0):
    """Δt_k = t_k − t_{k−1} before every event (first event and padding: 0), float32 in model units.

    Concrete inputs are differenced on the host in int64 (µs timestamps overflow int32 after 36 min);
    traced inputs in their own integer dtype (a wrapped int32 difference is still exact for gaps below
    2^31 µs). Negative gaps can only reach this point under jit; they are clamped to 0.
    """
    if is_traced(timestamps) or is_traced(attention_mask):
        t = jnp.asarray(timestamps)
        gaps = jnp.diff(t, axis=-1)  # in the traced dtype
        gaps = jnp.concatenate([jnp.zeros_like(t[:, :1]), gaps], axis=-1)
        valid = valid_mask(attention_mask, t.shape) if attention_mask is not None else jnp.ones(t.shape, bool)
        dt = jnp.maximum(gaps.astype(jnp.float32), 0.0) / jnp.float32(time_unit_us)
        return jnp.where(valid, dt, 0.0)
    t = np.asarray(timestamps)
    t = t.astype(np.int64) if t.dtype.kind in "iub" else t.astype(np.float64)
    gaps = np.diff(t, axis=-1, prepend=t[:, :1])
    valid = valid_mask(attention_mask, t.shape)
    return np.where(valid, gaps_to_units(gaps, time_unit_us), np.float32(0.0))


def gaps_to_units(gaps, time_unit_us: float) -> np.ndarray:
    """Host gaps in µs (int64 or float) → float32 model units: float64 gap (negative ones as 0) / time
    unit, then rounded to float32 (the one rule the full forward and streaming share)."""
    return (np.maximum(np.asarray(gaps, np.float64), 0.0) / float(time_unit_us)).astype(np.float32)



# ================================================================================================
# Host-side input checks
# ================================================================================================


def _first_bad(bad):
    """(sample, position) of the first True in a 2-D bool array."""
    i, k = np.argwhere(bad)[0]
    return int(i), int(k)


def check_inputs(config, input_ids, timestamps, attention_mask=None) -> None:
    """ValueError naming the argument and the offending value for concrete (non-traced) inputs:
    shapes (batch, length) that match, attention_mask of 0/1 with valid events first, ids inside the
    vocabulary, finite timestamps that never decrease over the valid events (equal ones are legal)."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must have shape (batch, length), got shape {ids.shape}")
    ts = np.asarray(timestamps)
    if ts.shape != ids.shape:
        raise ValueError(f"timestamps has shape {ts.shape} but input_ids has shape {ids.shape}; they must match")
    if attention_mask is not None:
        am = np.asarray(attention_mask)
        if am.shape != ids.shape:
            raise ValueError(
                f"attention_mask has shape {am.shape} but input_ids has shape {ids.shape}; they must match"
            )
        if am.dtype.kind == "f" and np.isnan(am).any():
            raise ValueError(f"attention_mask holds NaN at (sample, position) {_first_bad(np.isnan(am))}")
        if not np.isin(am, (0, 1)).all():
            i, k = _first_bad(~np.isin(am, (0, 1)))
            raise ValueError(f"attention_mask must hold 0/1, got {am[i, k]} at (sample, position) ({i}, {k})")
        if (np.diff(am.astype(np.int8), axis=1) > 0).any():
            i = int(np.argwhere(np.diff(am.astype(np.int8), axis=1) > 0)[0, 0])
            raise ValueError(
                f"attention_mask of sample {i} has a valid event after padding ({am[i].astype(int).tolist()[:20]}...); "
                "put the valid events first and the padding at the end"
            )
    valid = valid_mask(attention_mask, ids.shape)
    if ids.dtype.kind == "f":
        if np.isnan(ids[valid]).any():
            raise ValueError(f"input_ids holds NaN at (sample, position) {_first_bad(np.isnan(ids) & valid)}")
        if (ids[valid] != np.round(ids[valid])).any():
            i, k = _first_bad((ids != np.round(ids)) & valid)
            raise ValueError(f"input_ids must hold integer token ids, got {ids[i, k]} at ({i}, {k})")
    elif ids.dtype.kind not in "iu":
        raise ValueError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    outside = valid & ((ids < 0) | (ids >= config.vocab_size))
    if outside.any():
        i, k = _first_bad(outside)
        raise ValueError(
            f"input_ids holds token id {ids[i, k]} at (sample, position) ({i}, {k}), outside the vocabulary "
            f"[0, {config.vocab_size}); check that the tokenizer matches the model (vocab_size={config.vocab_size})"
        )
    if ts.dtype.kind == "f":
        bad = valid & ~np.isfinite(ts)
        if bad.any():
            i, k = _first_bad(bad)
            raise ValueError(f"timestamps holds {ts[i, k]} at (sample, position) ({i}, {k})")
    elif ts.dtype.kind not in "iu":
        raise ValueError(f"timestamps must be integer µs, got dtype {ts.dtype}")
    if ts.dtype.kind == "u" and ts.dtype.itemsize == 8 and (ts[valid] >= 2**63).any():
        i, k = _first_bad((ts >= 2**63) & valid)
        raise ValueError(f"timestamps holds {ts[i, k]} µs at (sample, position) ({i}, {k}), past the int64 µs range "
                         "(2^63 µs); timestamps are int64 µs (check the time unit and that no field is corrupted)")
    ts64 = ts.astype(np.int64) if ts.dtype.kind in "iu" else ts
    decreasing = (np.diff(ts64, axis=1) < 0) & valid[:, 1:]
    if decreasing.any():
        i, k = _first_bad(decreasing)
        raise ValueError(
            f"timestamps decrease in sample {i}: {ts[i, k]} at position {k} then {ts[i, k + 1]} at position "
            f"{k + 1}; events must be sorted by time (equal timestamps are fine)"
        )
    check_events = getattr(config, "check_events", None)  # a model family's own rule (e.g. frames not empty)
    if check_events is not None:
        check_events(ids, ts64, valid)


def prepare_inputs(config, input_ids, timestamps, attention_mask=None):
    """Checked (input_ids int32, time_deltas float32, attention_mask int32) for the jitted call.

    Concrete inputs are checked and differenced on the host (int64); traced ones inside the trace.
    """
    traced = any(is_traced(a) for a in (input_ids, timestamps, attention_mask))
    if not traced:
        check_inputs(config, input_ids, timestamps, attention_mask)
    xp = jnp if traced else np
    ids = xp.asarray(input_ids)
    if attention_mask is None:
        mask = xp.ones(ids.shape, xp.int32)
    else:
        mask = (xp.asarray(attention_mask) != 0).astype(xp.int32)
    dt = compute_time_deltas(timestamps, mask, config.time_unit_us)
    ids = xp.where(mask != 0, ids, 0).astype(xp.int32)  # padding may hold anything (-1, pad id, ...)
    return ids, dt, mask



def check_classification_labels(config, labels, shape):
    """Class ids (B,) or soft labels (B, num_labels), checked on the host (ValueError naming the value)."""
    if is_traced(labels):
        return labels
    arr = np.asarray(labels)
    n = config.num_labels
    if arr.dtype.kind == "f":
        if arr.shape != (shape[0], n):
            raise ValueError(f"soft labels must have shape (batch, num_labels) = {(shape[0], n)}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"labels holds a non-finite value at {tuple(np.argwhere(~np.isfinite(arr))[0])}")
        return arr.astype(np.float32)
    if arr.dtype.kind not in "iu" or arr.shape != (shape[0],):
        raise ValueError(
            f"labels must be int class ids of shape ({shape[0]},) or float soft labels of shape "
            f"({shape[0]}, {n}); got dtype {arr.dtype}, shape {arr.shape}"
        )
    if ((arr < 0) | (arr >= n)).any():
        i = int(np.flatnonzero((arr < 0) | (arr >= n))[0])
        raise ValueError(f"labels[{i}] = {arr[i]} is not a class id in [0, {n}) (num_labels={n})")
    return arr.astype(np.int32)


def check_next_event_labels(config, labels, shape):
    """Token ids shaped like input_ids (negative: ignored), checked on the host."""
    if is_traced(labels):
        return labels
    arr = np.asarray(labels)
    if arr.shape != tuple(shape) or arr.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be int token ids shaped like input_ids {tuple(shape)} (usually labels=input_ids), "
            f"got dtype {arr.dtype}, shape {arr.shape}"
        )
    if (arr >= config.vocab_size).any():
        i, k = _first_bad(arr >= config.vocab_size)
        raise ValueError(
            f"labels holds token id {arr[i, k]} at ({i}, {k}), outside the vocabulary of {config.vocab_size}"
        )
    return arr.astype(np.int32)


# ================================================================================================
# Outputs
# ================================================================================================


@flax.struct.dataclass
class BackboneOutput(ModelOutput):
    """What a backbone module returns (the contract): hidden states at its output resolution (B, L', H'), which
    of those positions are valid (pooled_mask) and their Δt (pooled_time_deltas: the sum of the gaps they
    cover), optionally every layer's output, the event embeddings (B, L, H) (the next-event head adds them
    where the backbone pools) and the total time Σ Δt per sample (B,)."""

    last_hidden_state: jax.Array = None
    pooled_mask: jax.Array = None
    pooled_time_deltas: jax.Array = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    inputs_embeds: jax.Array = None
    total_time: jax.Array = None
    event_context: Optional[jax.Array] = None



@flax.struct.dataclass
class EventModelOutput(ModelOutput):
    """last_hidden_state (B, L', H') at the last stage's resolution (L' = ceil(L / stride^stages)),
    pooled_mask (B, L') its valid positions, pooled_time_deltas (B, L') their Δt, hidden_states
    (embeddings, then every block's output) with output_hidden_states, batch_stats when train=True with
    batch norm."""

    last_hidden_state: jax.Array = None
    pooled_mask: jax.Array = None
    pooled_time_deltas: jax.Array = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    batch_stats: Optional[dict] = None


@flax.struct.dataclass
class SequenceClassifierOutput(ModelOutput):
    """loss (with labels), logits (B, num_labels), hidden_states, batch_stats (train with batch norm)."""

    loss: Optional[jax.Array] = None
    logits: jax.Array = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    batch_stats: Optional[dict] = None


@flax.struct.dataclass
class NextEventPredictionOutput(ModelOutput):
    """Per event k (B, L, ·): logits over the next token; gap_mixture_logits, gap_log_means,
    gap_log_scales of the log-normal mixture over log(gap to the next event + 1 µs) (model time units).
    With labels: loss = token_nll + time_nll, mean NLL per predicted event (time_nll: nats of the
    integer-µs gap, see `lognormal_mixture_nll`)."""

    loss: Optional[jax.Array] = None
    logits: jax.Array = None
    gap_mixture_logits: jax.Array = None
    gap_log_means: jax.Array = None
    gap_log_scales: jax.Array = None
    token_nll: Optional[jax.Array] = None
    time_nll: Optional[jax.Array] = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    batch_stats: Optional[dict] = None



# ================================================================================================
# Heads: readout, classification, next-event prediction (loss and sampling)
# ================================================================================================


def flat_matmul(x, w):
    """x (…, K) @ w (K, N) with x flattened to 2-D: for 3-D x, XLA CPU computes the weight gradient
    xᵀ·g through a slow transposing copy that fuses x's producers (measured 2.6x on a whole step)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def flat_dense(dense: nn.Module, x):
    """A Dense layer applied to x flattened to 2-D (see flat_matmul)."""
    return dense(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], dense.features)



def masked_readout(hidden, mask, dt, total_time, config):
    """One vector per sample from the valid pooled positions: mean | timepool | last.

    timepool: Σ_j h_j (Δt_j + eps) / Σ_j (Δt_j + eps) over valid j (reference readout: divided by the
    whole duration instead). A sample without valid events reads as zeros.
    """
    m = mask.astype(hidden.dtype)
    mode = config.classifier_pooling
    if mode == "last":
        count = jnp.sum(mask, axis=1).astype(jnp.int32)
        last = jnp.take_along_axis(hidden, jnp.maximum(count - 1, 0)[:, None, None], axis=1)[:, 0]
        return last * (count > 0)[:, None]
    w = m if mode == "mean" else (dt + config.timepool_eps) * m
    norm = jnp.sum(w, axis=1)
    if mode == "timepool" and config.readout_convention == "reference":
        norm = total_time
    return jnp.sum(hidden * w[..., None], axis=1) / jnp.where(norm > 0, norm, 1.0)[:, None]


def classification_loss(logits, labels):
    """Mean cross-entropy; labels int (B,) class ids or float (B, C) soft targets (cut-mix, smoothing)."""
    return jnp.mean(_cross_entropy(logits, labels))


def _cross_entropy(logits, labels):
    """Per-sample cross-entropy of logits (B, …, C) against labels (B,) ids or (B, C) soft targets."""
    logits = logits.astype(jnp.float32)
    extra = logits.ndim - 2  # positions between the batch and the classes (TET)
    if jnp.issubdtype(labels.dtype, jnp.floating):
        return optax.softmax_cross_entropy(logits, labels.reshape(labels.shape[:1] + (1,) * extra + labels.shape[1:]))
    ids = labels.astype(jnp.int32).reshape(labels.shape[:1] + (1,) * extra)
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.broadcast_to(ids, logits.shape[:-1]))


def tet_loss(position_logits, mask, labels, means: float, lamb: float):
    """TET (Deng et al. 2022; the Spike-Driven Transformer reference's criterion.TET_loss) over the valid
    positions: (1 − λ)·mean_b mean_t CE(logits_bt, y_b) + λ·mean over valid (b, t, c) of (logits − means)².
    position_logits (B, L', C), mask (B, L') the valid positions (the reference: all T frames)."""
    m = mask.astype(jnp.float32)
    per_sample = jnp.sum(_cross_entropy(position_logits, labels) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
    loss = (1.0 - lamb) * jnp.mean(per_sample)
    if lamb:
        sq = jnp.square(position_logits.astype(jnp.float32) - means) * m[..., None]
        loss = loss + lamb * jnp.sum(sq) / jnp.maximum(jnp.sum(m) * position_logits.shape[-1], 1.0)
    return loss


def log_diff_ndtr(a, b):
    """log(Φ(b) − Φ(a)) for a < b, computed in the lower tail (Φ(b) − Φ(a) = Φ(−a) − Φ(−b))."""
    flip = a > 0
    lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
    log_lo, log_hi = jax.scipy.special.log_ndtr(lo), jax.scipy.special.log_ndtr(hi)
    return log_hi + jnp.log(-jnp.expm1(log_lo - log_hi))


def lognormal_mixture_nll(gap, mixture_logits, log_means, log_scales, resolution):
    """−log P(gap) of a gap quantised to `resolution` (1 µs) under a log-normal mixture: nats ≥ 0.

    The gap n·r (r = resolution, in model time units) falls in the bin y ∈ [log(n·r + r), log(n·r + 2r))
    of y = log(gap + r) ~ Σ_i w_i N(μ_i, σ_i²), so P(n) = Σ_i w_i (Φ(z_hi,i) − Φ(z_lo,i)): a proper
    distribution over integer µs gaps, finite for simultaneous events (n = 0) and never below 0 nats.
    A bin far narrower than σ uses the midpoint rule φ(z_mid)·width (the CDF difference would cancel).
    """
    scale = jnp.exp(log_scales)
    z_lo = (jnp.log(gap + resolution)[..., None] - log_means) / scale
    width = (jnp.log1p(resolution / (gap + resolution)))[..., None] / scale  # bin width in z
    narrow = width < 1e-3
    z_hi = jnp.where(narrow, z_lo + 1.0, z_lo + width)  # keeps the unused branch finite (and its grad)
    mid = z_lo + 0.5 * width
    log_bin = jnp.where(
        narrow,
        -0.5 * jnp.square(mid) - 0.5 * np.log(2 * np.pi) + jnp.log(width),
        log_diff_ndtr(z_lo, z_hi),
    )
    return -jax.nn.logsumexp(jax.nn.log_softmax(mixture_logits, axis=-1) + log_bin, axis=-1)


class NextEventHead(nn.Module):
    """For every event k: logits over the next token and a log-normal mixture over the gap to it.

    Causality with a strided backbone: the last stage has one position per window of D = stride^stages
    events and its position j depends on events < (j+1)·D only. Event k therefore reads the last window
    that is complete at k, j = ⌊(k+1)/D⌋ − 1 (none for k < D − 1), plus its own embedding through
    `local_proj` (so the most recent event always informs the prediction). With D = 1 (pooling_stride=1,
    the recommended pretraining setting) it reads the event's own hidden state. No prediction at k ever
    sees an event after k (batch-norm statistics in training mode aside, as for any batch-normed model).
    A backbone with data-dependent positions (frames) names event k's last complete position itself
    (`event_context`); one without event embeddings (inputs_embeds None) gets the head's own `event_embed`.
    """

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, inputs_embeds, event_context=None, input_ids=None):
        cfg = self.config
        width = hidden.shape[-1]
        if event_context is None and cfg.total_stride == 1:
            features = hidden
        else:
            if inputs_embeds is None:
                ids = jnp.clip(input_ids, 0, cfg.vocab_size - 1)
                inputs_embeds = nn.Embed(cfg.vocab_size, width, dtype=self.dtype, name="event_embed")(ids)
            length = inputs_embeds.shape[1]
            if event_context is None:
                window = jnp.broadcast_to((jnp.arange(length) + 1) // cfg.total_stride - 1, (hidden.shape[0], length))
            else:
                window = event_context
            context = jnp.take_along_axis(hidden, jnp.clip(window, 0, hidden.shape[1] - 1)[..., None], axis=1)
            context = context * (window >= 0)[..., None]
            features = context + flat_dense(nn.Dense(width, dtype=self.dtype, name="local_proj"), inputs_embeds)
        features = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="norm")(features)
        logits = flat_dense(nn.Dense(cfg.vocab_size, dtype=self.dtype, name="token_logits"), features)
        k = cfg.num_mixture_components
        gap = flat_dense(nn.Dense(3 * k, dtype=self.dtype, name="gap_params"), features).astype(jnp.float32)
        return logits, gap[..., :k], gap[..., k : 2 * k], jnp.clip(gap[..., 2 * k :], *GAP_LOG_SCALE_RANGE)


def next_event_loss(logits, mixture_logits, log_means, log_scales, labels, time_deltas, mask, config):
    """Mean NLL per predicted event (token + gap) of event k+1 given events ≤ k; labels < 0 are ignored.

    Returns (loss, token_nll, time_nll), each averaged over positions k whose next event k+1 is valid.
    """
    target = jnp.concatenate([labels[:, 1:], jnp.full_like(labels[:, :1], -1)], axis=1)
    next_gap = jnp.concatenate([time_deltas[:, 1:], jnp.zeros_like(time_deltas[:, :1])], axis=1)
    has_next = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1) & (target >= 0)
    token = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), jnp.clip(target, 0, config.vocab_size - 1).astype(jnp.int32)
    )
    gap = lognormal_mixture_nll(next_gap, mixture_logits, log_means, log_scales, 1.0 / config.time_unit_us)
    w = has_next.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    token_nll, time_nll = jnp.sum(token * w) / n, jnp.sum(gap * w) / n
    return token_nll + time_nll, token_nll, time_nll



def sample_next_event(key, logits, mixture_logits, log_means, log_scales, temperature, time_unit_us, banned):
    """One event from the next-event head's outputs (one row): (token int32, gap int32 µs).

    Token ~ softmax(logits / T) without the `banned` ids (pad/bos/eos); log(gap + 1 µs) ~ the log-normal
    mixture with component ~ softmax(mixture_logits / T) and scale σ·T. T = 0 is greedy: the most likely
    token and component, gap = exp(μ) − 1 µs (the mixture's median-like mode of its main component).
    """
    k_token, k_comp, k_gap = jax.random.split(key, 3)
    logits = jnp.where(banned, -jnp.inf, logits.astype(jnp.float32))
    greedy = temperature <= 0
    t = jnp.where(greedy, 1.0, temperature)
    token = jnp.where(greedy, jnp.argmax(logits), jax.random.categorical(k_token, logits / t))
    comp = jnp.where(greedy, jnp.argmax(mixture_logits), jax.random.categorical(k_comp, mixture_logits / t))
    noise = jnp.where(greedy, 0.0, jax.random.normal(k_gap) * jnp.exp(log_scales[comp]) * t)
    log_gap = log_means[comp] + noise  # log(gap + resolution) in model time units
    gap_us = jnp.exp(log_gap) * time_unit_us - 1.0  # gap + 1 µs = exp(y) units
    return token.astype(jnp.int32), jnp.round(jnp.clip(gap_us, 0.0, 2.0**30)).astype(jnp.int32)


def banned_tokens(config) -> np.ndarray:
    """(vocab,) bool: the special tokens (pad, bos, eos) generation never draws."""
    banned = np.zeros(config.vocab_size, bool)
    banned[[i for i in (config.pad_token_id, config.bos_token_id, config.eos_token_id) if i is not None]] = True
    return banned


# ================================================================================================
# The flax modules of the three task models, parameterised by the backbone
# ================================================================================================


class _TaskModule(nn.Module):
    """A backbone (class attribute `backbone_class`, its variables under `backbone_name`) plus a head."""

    config: Any
    dtype: Any = jnp.float32
    backbone_class = None  # set by each model family
    backbone_name = "model"


class EventModelModule(_TaskModule):
    """The bare backbone: hidden states (EventModelOutput)."""

    @nn.compact
    def __call__(self, input_ids, time_deltas, attention_mask, labels=None, train=False, output_hidden_states=False):
        backbone = self.backbone_class(self.config, self.dtype, name=self.backbone_name)
        out = backbone(input_ids, time_deltas, attention_mask, train, output_hidden_states)
        return EventModelOutput(last_hidden_state=out.last_hidden_state, pooled_mask=out.pooled_mask,
                                pooled_time_deltas=out.pooled_time_deltas, hidden_states=out.hidden_states)


class SequenceClassificationModule(_TaskModule):
    """Backbone → masked readout (mean | timepool | last) → linear classifier."""

    @nn.compact
    def __call__(self, input_ids, time_deltas, attention_mask, labels=None, train=False, output_hidden_states=False):
        backbone = self.backbone_class(self.config, self.dtype, name=self.backbone_name)
        out = backbone(input_ids, time_deltas, attention_mask, train, output_hidden_states)
        cfg = self.config
        pooled = masked_readout(out.last_hidden_state, out.pooled_mask, out.pooled_time_deltas, out.total_time, cfg)
        classifier = nn.Dense(cfg.num_labels, dtype=self.dtype, name=HEAD_NAMES["classification"])
        logits = classifier(pooled)
        loss = None
        if labels is not None and getattr(cfg, "classification_loss", "cross_entropy") == "tet":
            position_logits = flat_dense(classifier, out.last_hidden_state)  # their masked mean is `logits`
            loss = tet_loss(position_logits, out.pooled_mask, labels, cfg.tet_means, cfg.tet_lamb)
        elif labels is not None:
            loss = classification_loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class NextEventPredictionModule(_TaskModule):
    """Backbone → next-event head (next token + gap mixture per event), strictly causal."""

    @nn.compact
    def __call__(self, input_ids, time_deltas, attention_mask, labels=None, train=False, output_hidden_states=False):
        if getattr(self.config, "gap_convention", "before") == "after":
            raise ValueError(
                "next-event prediction needs gap_convention='before': with 'after' every event carries the "
                "gap to the next one, which the model would then read instead of predicting it"
            )
        reason = getattr(self.config, "not_causal_reason", None)
        if reason:
            raise ValueError(f"next-event prediction needs a causal backbone: {reason}")
        backbone = self.backbone_class(self.config, self.dtype, name=self.backbone_name)
        out = backbone(input_ids, time_deltas, attention_mask, train, output_hidden_states)
        head = NextEventHead(self.config, self.dtype, name=HEAD_NAMES["next-event"])
        logits, mix, means, scales = head(out.last_hidden_state, out.inputs_embeds, out.event_context, input_ids)
        loss = token_nll = time_nll = None
        if labels is not None:
            mask = jnp.asarray(valid_mask(attention_mask, input_ids.shape))
            dt = jnp.where(mask, jnp.asarray(time_deltas, jnp.float32), 0.0)
            loss, token_nll, time_nll = next_event_loss(logits, mix, means, scales, labels, dt, mask, self.config)
        return NextEventPredictionOutput(
            loss=loss, logits=logits, gap_mixture_logits=mix, gap_log_means=means, gap_log_scales=scales,
            token_nll=token_nll, time_nll=time_nll, hidden_states=out.hidden_states,
        )  # fmt: skip


# ================================================================================================
# The model classes: a family's base (config, backbone) + a task mixin (labels, generate)
# ================================================================================================


class FlaxEventPreTrainedModel(FlaxPreTrainedModel):
    """Base of every event model: weights init, input checks, the jitted call, streaming.

    model(input_ids, timestamps, attention_mask=None, labels=None, *, params=None, batch_stats=None,
          train=False, dropout_rng=None, output_hidden_states=False, return_dict=True)
    timestamps are int µs (any offset). Works eagerly (jit-compiled per input shape) and inside
    jax.jit / jax.grad with params= passed explicitly.
    A model family sets config_class, base_model_prefix (= its modules' backbone_name) and
    `streamer_class`; a task mixin sets `task` and the label check.
    """

    task = None  # "classification" | "next-event" for the head models
    streamer_class = None  # "module:Class" of this family's streaming step (an eventlm.streaming.Streamer)

    def param_groups(self, params=None):
        """Optimizer group of every parameter (a pytree like `params`): all "regular" unless a backbone
        names groups of its own (EventSSM: "ssm")."""
        return jax.tree_util.tree_map(lambda _: "regular", self.params if params is None else params)

    def init_weights(self, rng, input_shape) -> dict:
        ids = jnp.zeros(input_shape, jnp.int32)
        dt = jnp.ones(input_shape, jnp.float32)
        mask = jnp.ones(input_shape, jnp.int32)
        params_rng, dropout_rng = jax.random.split(rng)
        # one compilation instead of thousands of eager ops; init runs once, so on CPU XLA may skip its
        # backend optimisations (halves the compile time)
        rngs = {"params": params_rng, "dropout": dropout_rng}
        options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
        try:
            variables = jax.jit(self.module.init, compiler_options=options)(rngs, ids, dt, mask)
        except ValueError as err:  # inside a trace (eval_shape, jit): options only apply at the top level
            if "compiler_options" not in str(err):
                raise
            variables = self.module.init(rngs, ids, dt, mask)
        return flax.core.unfreeze(variables)

    def _check_labels(self, labels, shape):
        raise ValueError(f"{type(self).__name__} has no head and takes no labels; use a ...ForSequenceClassification "
                         "or ...ForNextEventPrediction model")

    @functools.cached_property
    def _jitted_apply(self):
        return jax.jit(self._apply, static_argnames=("train", "output_hidden_states"))

    def _apply(self, variables, ids, dt, mask, labels, rngs, train=False, output_hidden_states=False):
        kwargs = dict(labels=labels, train=train, output_hidden_states=output_hidden_states, rngs=rngs)
        if train and "batch_stats" in variables:
            out, updated = self.module.apply(variables, ids, dt, mask, mutable=["batch_stats"], **kwargs)
            return out.replace(batch_stats=updated["batch_stats"])
        return self.module.apply(variables, ids, dt, mask, **kwargs)

    def __call__(self, input_ids, timestamps, attention_mask=None, labels=None, *, params=None, batch_stats=None,
                 train: bool = False, dropout_rng=None, output_hidden_states: bool = False, return_dict: bool = True):
        ids, dt, mask = prepare_inputs(self.config, input_ids, timestamps, attention_mask)
        if labels is not None:
            labels = self._check_labels(labels, ids.shape)
        dropout = getattr(self.config, "dropout", 0.0)
        if train and dropout > 0 and dropout_rng is None:
            raise ValueError(
                f"train=True with dropout={dropout} needs dropout_rng=jax.random.PRNGKey(...) (or set config.dropout=0)"
            )
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
        variables = self._variables_for(params, batch_stats)
        out = self._jitted_apply(
            variables, ids, dt, mask, labels, rngs, train=train, output_hidden_states=output_hidden_states
        )
        return out if return_dict else out.to_tuple()

    # Event-by-event inference: state in, state out (eventlm.streaming; the family's step does the math).
    def init_stream(self, batch_size: int = 1, params=None):
        """A fresh stream state for `batch_size` streams (see eventlm.streaming.init_stream)."""
        from .streaming import init_stream

        return init_stream(self, batch_size, params=params)

    def stream(self, input_ids, timestamps, state, attention_mask=None, *, params=None, batch_stats=None,
               implementation: str = "auto"):
        """(output given every event so far, new state) for one chunk of any length ≥ 1."""
        from .streaming import stream

        return stream(self, input_ids, timestamps, state, params=params, batch_stats=batch_stats,
                      attention_mask=attention_mask, implementation=implementation)

    @property
    def stream_implementation(self):
        """The step the last `stream` call with this model's weights ran ("cpu-kernel" | "xla"; None before one):
        implementation="auto" picks the faster one on this machine (eventlm.streaming.Streamer.implementation_for)."""
        streamer = self.__dict__.get("_streamer")
        return None if streamer is None else streamer.implementation


class ForSequenceClassification:
    """Task mixin: a sequence classifier; labels int (B,) or soft (B, C)."""

    task = "classification"

    def _check_labels(self, labels, shape):
        return check_classification_labels(self.config, labels, shape)


class ForNextEventPrediction:
    """Task mixin: for every event, the next token and the gap to it (labels = input_ids; the model shifts
    them; negative labels are ignored); `generate` samples event streams."""

    task = "next-event"

    def _check_labels(self, labels, shape):
        return check_next_event_labels(self.config, labels, shape)

    def generate(self, num_events: int, temperature: float = 1.0, seed: int = 0, tokenizer=None, prompt=None, **kwargs):
        """Sample `num_events` events one by one with the stream state (see eventlm.streaming.generate)."""
        from .streaming import generate

        return generate(self, num_events, temperature=temperature, seed=seed, tokenizer=tokenizer, prompt=prompt,
                        **kwargs)


def task_of_weights(folder) -> str:
    """The task whose head a saved model's weights hold. Only for folders saved before `architectures`
    was written to config.json (eventlm 0.1); newer folders name their class."""
    from pathlib import Path

    from safetensors import safe_open

    from .modeling_flax_utils import WEIGHTS_NAME

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a model saved by save_pretrained")
    with safe_open(str(path), framework="numpy") as f:
        keys = list(f.keys())
    for task, head in HEAD_NAMES.items():
        if any(k.startswith(f"params.{head}.") for k in keys):
            return task
    raise ValueError(f"{path} holds no classification or next-event head (only a backbone?); use a model trained "
                     f"for classification or next-event prediction")
