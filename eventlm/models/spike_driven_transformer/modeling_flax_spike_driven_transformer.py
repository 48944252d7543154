"""Flax Spike-Driven Transformer (Yao et al., NeurIPS 2023) on eventlm's event-token contract.

Read top to bottom (shapes: T frames, B samples, H×W pixels, C channels; arrays are (T, B, H, W, C)):

1. frames: the tokens of each sample are integrated into T frames (P, H, W) of event counts on the device
   (`frames.events_to_frames`, SpikingJelly's split by number / time), timestamps rebuilt exactly from the
   integer µs gaps.
2. neurons: multi-step LIF (τ = 2) or ParametricLIF, SpikingJelly's semantics (eventlm.spiking), one per
   layer as in the reference; BN is batch norm over (T·B, H, W) per channel.
3. MS_SPS stem: conv3×3 → BN → LIF (→ max-pool 3×3/2 where pooling_stat says) for D/8, D/4, D/2; then
   conv3×3 → BN (→ max-pool) = the membrane m; LIF(m) → conv3×3 → BN (relative position) + m.
4. block: SDSA — s = LIF(x); Q, K, V = LIF(BN(conv1×1(s))) (binary; with dvs_mode K and V max-pooled 3×3);
   per head, KV = Σ_n K⊙V over the N = H·W tokens (dvs_mode: K⊙V max-pooled first), LIF with threshold 0.5;
   out = Q⊙KV (dvs_mode: max-pooled) → conv1×1 → BN → + x. Then the MLP: LIF → conv1×1 → BN (→ + x when
   the width is kept) → LIF → conv1×1 → BN → + x. Residuals carry real-valued membranes.
5. head: mean over the N tokens → LIF → per frame a D-vector of spikes: the backbone's hidden states
   (B, T, D), one valid position per frame. The shared classification head (modeling_events) applies the
   linear layer and averages over the T positions: W·mean_t(s_t) + b = mean_t(W·s_t + b), the reference's
   "linear, then mean over T".
Unused in the reference's forward pass, so absent here: `talking_heads` (a Conv1d), `attn_lif`, `rpe_lif`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ...modeling_events import (BackboneOutput, EventModelModule, FlaxEventPreTrainedModel, ForNextEventPrediction,
                                ForSequenceClassification, NextEventPredictionModule, SequenceClassificationModule,
                                valid_mask)
from ...spiking import SpikeSum, multistep_lif
from .configuration_spike_driven_transformer import SpikeDrivenTransformerConfig
from .frames import events_to_frames, frame_context, frames_to_input, frames_used


def _carried(module, name, shape, dtype, frame_mask):
    """A value streaming carries from frame to frame (the "stream_state" collection, present when the backbone
    runs on frames with a frame_mask); None in the full forward, which starts every sample from rest."""
    if frame_mask is None:
        return None
    return module.variable("stream_state", name, jnp.zeros, shape, dtype)


class LIF(nn.Module):
    """A layer of multi-step LIF neurons over the leading T axis (ParametricLIF with spike_mode="plif"); with a
    frame_mask (T, B) (streaming) the membranes start from and return to the "stream_state" collection and a
    masked frame leaves them unchanged."""

    config: Any
    v_threshold: float = 1.0

    @nn.compact
    def __call__(self, x, frame_mask=None):
        cfg = self.config
        inv_tau = 0.5
        if cfg.spike_mode == "plif":  # 1/τ = sigmoid(w), w = −log(τ_init − 1) = 0 for τ_init = 2
            inv_tau = jax.nn.sigmoid(self.param("w", nn.initializers.zeros, ()))
        membrane = _carried(self, "v", x.shape[1:], x.dtype, frame_mask)
        spikes, v = multistep_lif(x, None if membrane is None else membrane.value, inv_tau=inv_tau,
                                  v_threshold=self.v_threshold, alpha=cfg.surrogate_alpha, valid=frame_mask)
        if membrane is not None and not self.is_initializing():
            membrane.value = v
        return spikes


def _frames_op(op, x):
    """Apply a (N, H, W, C) image op to (T, B, H, W, C) by flattening T·B (the reference's flatten(0, 1))."""
    t, b = x.shape[:2]
    y = op(x.reshape((t * b,) + x.shape[2:]))
    return y.reshape((t, b) + y.shape[1:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x, window: int, stride: int):
    """MaxPool2d(window, stride, padding=window // 2) over H, W of (N, H, W, C) (padding never wins). The
    gradient goes to the first maximum of each window in row-major order (PyTorch's and XLA's rule: with
    binary spikes most windows tie); written by hand as a sum of strided pads, where autodiff's
    select-and-scatter lowers on CPU to a scatter with four index arrays of the padded input's size."""
    pad = window // 2
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


def _max_pool_fwd(x, window, stride):
    out = _max_pool(x, window, stride)
    return out, (x, out)


def _max_pool_bwd(window, stride, residuals, g):
    x, out = residuals
    pad = window // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf)
    n, hp, wp, c = padded.shape
    ho, wo = out.shape[1:3]
    taken = jnp.zeros(out.shape, bool)
    g_padded = jnp.zeros(padded.shape, g.dtype)
    for dy in range(window):
        for dx in range(window):
            candidate = padded[:, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride]
            chosen = (candidate == out) & ~taken
            taken = taken | chosen
            g_padded = g_padded + jax.lax.pad(
                jnp.where(chosen, g, 0.0), jnp.zeros((), g.dtype),
                ((0, 0, 0), (dy, hp - dy - stride * (ho - 1) - 1, stride - 1),
                 (dx, wp - dx - stride * (wo - 1) - 1, stride - 1), (0, 0, 0)))
    return (g_padded[:, pad:pad + x.shape[1], pad:pad + x.shape[2]],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


_NHWC = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _same_conv(x, w, pad: int):
    """Stride-1 convolution of x (N, H, W, C) with w (k, k, C, D), zero padding `pad` on each side. Its weight
    gradient is written by hand as one matmul per kernel offset (Σ over N·H·W of shifted input × output
    gradient): XLA's CPU backprop-filter convolution ran at ≈ 30 GFLOP/s where its forward and input-gradient
    convolutions reach 140-190 (1×1: 5.7× faster as a matmul, 3×3: 1.4-2.7×), most of the training step."""
    return _lax_same_conv(x, w, pad)


def _lax_same_conv(x, w, pad: int):
    return jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=_NHWC)


def _same_conv_fwd(x, w, pad):
    return _same_conv(x, w, pad), (x, w)


def _same_conv_bwd(pad, residuals, g):
    x, w = residuals
    g_x = jax.vjp(lambda a: _lax_same_conv(a, w, pad), x)[1](g)[0]
    k, cin, cout = w.shape[0], w.shape[2], w.shape[3]
    if cin < 8:  # a thin input (the stem's polarity frames): XLA's own weight gradient is faster there
        g_w = jax.vjp(lambda b: _lax_same_conv(x, b, pad), w)[1](g)[0]
        return g_x, g_w
    n, h, wd = x.shape[:3]
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    g2 = g.reshape(-1, cout)

    def tap(i, g_w):  # one kernel offset at a time (a loop: one shifted copy of x alive, not k·k)
        shifted = jax.lax.dynamic_slice(padded, (0, i // k, i % k, 0), (n, h, wd, cin))
        return g_w.at[i].set(shifted.reshape(-1, cin).T @ g2)

    g_w = jax.lax.fori_loop(0, k * k, tap, jnp.zeros((k * k, cin, cout), g.dtype)) if k > 1 else \
        (x.reshape(-1, cin).T @ g2)[None]
    return g_x, g_w.reshape(w.shape).astype(w.dtype)


_same_conv.defvjp(_same_conv_fwd, _same_conv_bwd)


def _flax_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
               **kwargs):
    """nn.Conv's `conv_general_dilated`: `_same_conv` for what ConvBN asks (stride 1, symmetric padding k // 2,
    NHWC), lax's convolution for anything else."""
    k = rhs.shape[0]
    plain = (tuple(window_strides) == (1, 1) and all(d == 1 for d in [*(lhs_dilation or ()), *(rhs_dilation or ())])
             and rhs.shape[0] == rhs.shape[1] and [tuple(p) for p in padding] == [(k // 2, k // 2)] * 2
             and kwargs.get("feature_group_count", 1) == 1 and kwargs.get("batch_group_count", 1) == 1
             and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
    if not plain:
        return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                            dimension_numbers, **kwargs)
    return _same_conv(lhs, rhs, k // 2)


class ConvBN(nn.Module):
    """conv (k×k, 'same' padding) → batch norm, over (T, B, H, W, C)."""

    features: int
    kernel: int = 1
    use_bias: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        conv = nn.Conv(self.features, (self.kernel, self.kernel), padding=self.kernel // 2, use_bias=self.use_bias,
                       conv_general_dilated=_flax_conv,
                       kernel_init=nn.initializers.truncated_normal(0.02), name="conv")
        bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")
        return _frames_op(lambda a: bn(conv(a)), x)


class SpikingPatchSplitting(nn.Module):
    """MS_SPS: (T, B, H, W, P) frames → (T, B, H', W', D) membranes."""

    config: Any

    @nn.compact
    def __call__(self, x, train: bool, frame_mask=None):
        cfg, dim, k = self.config, self.config.hidden_size, self.config.stem_kernel_size
        pool = [c == "1" for c in cfg.pooling_stat]
        for i, width in enumerate((dim // 8, dim // 4, dim // 2)):
            x = LIF(cfg, name=f"lif{i}")(ConvBN(width, k, name=f"proj{i}")(x, train), frame_mask)
            if pool[i]:
                x = _frames_op(lambda a: _max_pool(a, 3, 2), x)
        feature = ConvBN(dim, k, name="proj3")(x, train)
        if pool[3]:
            feature = _frames_op(lambda a: _max_pool(a, 3, 2), feature)
        return ConvBN(dim, k, name="rpe")(LIF(cfg, name="lif3")(feature, frame_mask), train) + feature


class SpikeDrivenSelfAttention(nn.Module):
    """SDSA (the reference's MS_SSA_Conv, mode "direct_xor"): linear in the tokens, spikes only. Tokens are the
    H·W positions of a frame (attention_over="space"), or the frames themselves ("time": K⊙V summed over all
    frames, or causally over each frame and those before it, a running sum streaming carries)."""

    config: Any

    @nn.compact
    def __call__(self, x, train: bool, frame_mask=None):
        cfg = self.config
        t, b, h, w, c = x.shape
        heads = cfg.num_heads
        s = LIF(cfg, name="shortcut_lif")(x, frame_mask)

        def erode(a):  # dvs_mode: the reference's 3×3 max-pool, stride 1, over the last two axes of `a`
            return _max_pool(a.reshape((-1,) + a.shape[-2:] + (1,)), 3, 1).reshape(a.shape) if cfg.dvs_mode else a

        def qkv(name, pooled=False):  # LIF(BN(conv1×1(s))); K and V eroded over (H, W) in dvs_mode
            out = LIF(cfg, name=f"{name}_lif")(ConvBN(c, 1, name=name)(s, train), frame_mask)
            return _frames_op(lambda a: _max_pool(a, 3, 1), out) if pooled and cfg.dvs_mode else out

        def per_head(a):  # (T, B, H, W, C) → (T·B, heads, N, C/heads), the reference's layout
            return a.reshape(t * b, h * w, heads, c // heads).transpose(0, 2, 1, 3)

        q, k, v = per_head(qkv("q")), per_head(qkv("k", True)), per_head(qkv("v", True))
        kv = SpikeSum(axis=2, name="token_sum")(erode(k * v))  # Σ over the N tokens of each frame
        kv = kv.reshape((t, b) + kv.shape[1:])
        if cfg.attention_over == "time":  # Σ over the frames (each frame's own Σ over its N tokens first)
            if frame_mask is not None:
                kv = kv * frame_mask.reshape(frame_mask.shape + (1,) * 3)
            if cfg.causal_attention:
                running = _carried(self, "kv_sum", kv.shape[1:], kv.dtype, frame_mask)
                kv = jnp.cumsum(kv, axis=0) + (0.0 if running is None else running.value)
                if running is not None and not self.is_initializing():
                    running.value = kv[-1]
            else:
                kv = jnp.broadcast_to(jnp.sum(kv, axis=0, keepdims=True), kv.shape)
        kv = LIF(cfg, v_threshold=0.5, name="talking_heads_lif")(kv, frame_mask)
        out = erode(q * kv.reshape(q.shape[:1] + kv.shape[2:]))
        out = out.transpose(0, 2, 1, 3).reshape(t, b, h, w, c)
        return ConvBN(c, 1, use_bias=True, name="proj")(out, train) + x


class SpikingMLP(nn.Module):
    """MS_MLP_Conv: LIF → conv1×1 → BN (+ x when the width is kept) → LIF → conv1×1 → BN → + x."""

    config: Any

    @nn.compact
    def __call__(self, x, train: bool, frame_mask=None):
        cfg = self.config
        hidden = cfg.hidden_size * cfg.mlp_ratio
        identity = x
        y = ConvBN(hidden, 1, use_bias=True, name="fc1")(LIF(cfg, name="fc1_lif")(x, frame_mask), train)
        if hidden == cfg.hidden_size:
            y = identity = identity + y
        y = ConvBN(cfg.hidden_size, 1, use_bias=True, name="fc2")(LIF(cfg, name="fc2_lif")(y, frame_mask), train)
        return y + identity


class FlaxSpikeDrivenTransformerBackbone(nn.Module):
    """Event tokens → frames → MS_SPS → blocks → per-frame spikes (B, T, D): the backbone of every model.
    Streaming calls it on ready frames (T, B, H, W, C) with a frame_mask (T, B), carrying every membrane (and
    the causal attention's running sum) in the "stream_state" collection."""

    config: SpikeDrivenTransformerConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, time_deltas, attention_mask, train: bool = False, output_hidden_states=False,
                 frames=None, frame_mask=None):
        cfg = self.config
        if frames is None:
            mask = jnp.asarray(valid_mask(attention_mask, input_ids.shape))
            dt = jnp.where(mask, jnp.asarray(time_deltas, jnp.float32), 0.0)
            # exact integer µs times: every gap is an integer number of µs (float32 of gap/unit, rounded back)
            times = jnp.cumsum(jnp.round(dt * np.float32(cfg.time_unit_us)).astype(jnp.int32), axis=1)
            x = frames_to_input(cfg, events_to_frames(input_ids, times, mask, cfg.sensor_size, cfg.num_frames,
                                                      cfg.split_by, cfg.frame_length))
            frames_valid = frames_used(input_ids, times, mask, cfg.num_channels, cfg.num_frames, cfg.split_by,
                                       cfg.frame_length).T
            total_time = jnp.sum(dt, axis=1)
            event_context = None if cfg.not_causal_reason else frame_context(
                input_ids, times, mask, cfg.num_channels, cfg.num_frames, cfg.split_by, cfg.frame_length)
        else:
            x = frames
            frames_valid = jnp.ones(x.shape[:2], bool) if frame_mask is None else frame_mask
            total_time, event_context = jnp.zeros(x.shape[1]), None
        hidden_states = (x,)
        x = SpikingPatchSplitting(cfg, name="patch_embed")(x, train, frame_mask)
        hidden_states += (x,)
        for i in range(cfg.num_layers):
            x = SpikeDrivenSelfAttention(cfg, name=f"block{i}_attn")(x, train, frame_mask)
            x = SpikingMLP(cfg, name=f"block{i}_mlp")(x, train, frame_mask)
            hidden_states += (x,)
        spikes = LIF(cfg, name="head_lif")(jnp.mean(x, axis=(2, 3)), frame_mask)  # (T, B, D)
        hidden = spikes.transpose(1, 0, 2).astype(self.dtype)
        return BackboneOutput(
            last_hidden_state=hidden, pooled_mask=frames_valid.T, pooled_time_deltas=jnp.zeros(hidden.shape[:2]),
            hidden_states=hidden_states if output_hidden_states else None, inputs_embeds=None,
            total_time=total_time, event_context=event_context,
        )  # fmt: skip


class FlaxSpikeDrivenTransformerModule(EventModelModule):
    backbone_class = FlaxSpikeDrivenTransformerBackbone
    backbone_name = "sdt"


class FlaxSpikeDrivenTransformerForSequenceClassificationModule(SequenceClassificationModule):
    backbone_class = FlaxSpikeDrivenTransformerBackbone
    backbone_name = "sdt"


class FlaxSpikeDrivenTransformerForNextEventPredictionModule(NextEventPredictionModule):
    backbone_class = FlaxSpikeDrivenTransformerBackbone
    backbone_name = "sdt"


class FlaxSpikeDrivenTransformerPreTrainedModel(FlaxEventPreTrainedModel):
    """The Spike-Driven Transformer's config and backbone name; one optimizer group; its streaming step."""

    config_class = SpikeDrivenTransformerConfig
    base_model_prefix = "sdt"
    streamer_class = ("eventlm.models.spike_driven_transformer.streaming_spike_driven_transformer:"
                      "SpikeDrivenTransformerStreamer")


class FlaxSpikeDrivenTransformerModel(FlaxSpikeDrivenTransformerPreTrainedModel):
    """The backbone: per-frame head spikes (B, T, D)."""

    module_class = FlaxSpikeDrivenTransformerModule


class FlaxSpikeDrivenTransformerForSequenceClassification(ForSequenceClassification,
                                                          FlaxSpikeDrivenTransformerPreTrainedModel):
    """Spike-Driven Transformer classifier: linear layer on the per-frame spikes, averaged over the T frames."""

    module_class = FlaxSpikeDrivenTransformerForSequenceClassificationModule


class FlaxSpikeDrivenTransformerForNextEventPrediction(ForNextEventPrediction,
                                                       FlaxSpikeDrivenTransformerPreTrainedModel):
    """Spike-Driven Transformer pretraining head (frames closed by count or time): event k reads the spikes of
    the last frame complete at k plus its own event embedding, and predicts the next token and the gap to it."""

    module_class = FlaxSpikeDrivenTransformerForNextEventPredictionModule


__all__ = [
    "FlaxSpikeDrivenTransformerModel",
    "FlaxSpikeDrivenTransformerForSequenceClassification",
    "FlaxSpikeDrivenTransformerForNextEventPrediction",
    "FlaxSpikeDrivenTransformerPreTrainedModel",
    "FlaxSpikeDrivenTransformerBackbone",
]
