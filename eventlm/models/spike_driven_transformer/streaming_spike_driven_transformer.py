"""The Spike-Driven Transformer's streaming step: frame by frame, every LIF membrane (and the causal temporal
attention's running K⊙V sum) carried from frame to frame.

The shared frame driver (eventlm.streaming.FrameStreamer) cuts each chunk of events into frames with this
family's rule (`frames.close_frames`: a frame closes after `frame_events` events or `frame_us` µs) and runs
the closed frames, then the open one, through the backbone module itself: the same Flax modules as the full
forward, applied to ready frames with a frame mask, their carried values in the "stream_state" collection.
Every layer acts on one frame at a time except the LIF neurons (membranes over T) and, with
attention_over="time", the attention's sum over frames; batch norm uses its running statistics. So frame t of
the stream equals frame t of the full forward, and the running mean of the head's spikes is its readout.
A next-event model's head reads, for every event, the last frame complete once that event is in (the
frames closed in the chunk, or the last one before it) plus the event's own embedding, as its full forward;
`generate` runs the same frame step for each drawn event inside one compiled scan (`FrameStreamer.event_step`).
Whole-sample splits (split_by "number" / "time") need every event before the first frame, and non-causal
temporal attention reads later frames: such models do not stream, and say so.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ...streaming import FrameStreamer
from .frames import close_frames, close_frames_one_event, counts_to_frames, frames_to_input
from .modeling_flax_spike_driven_transformer import FlaxSpikeDrivenTransformerBackbone


class SpikeDrivenTransformerStreamer(FrameStreamer):
    def __init__(self, model, params, batch_stats):
        cfg = model.config
        if not cfg.streams:
            raise ValueError(f"this Spike-Driven Transformer cannot stream: {cfg.not_causal_reason}")
        self.num_channels, self.frame_length = cfg.num_channels, cfg.frame_length
        self.backbone = FlaxSpikeDrivenTransformerBackbone(cfg, model.module.dtype)
        super().__init__(model, params, batch_stats)

    def check_variables(self, variables) -> None:
        if "batch_stats" not in variables:
            raise ValueError("streaming a Spike-Driven Transformer needs its batch-norm running statistics "
                             "(batch_stats); load the model with from_pretrained or pass batch_stats=")

    def _frames(self, counts):
        """(T, B, channels) event counts → the network's (T, B, H, W, C) input."""
        return frames_to_input(self.config, counts_to_frames(counts.transpose(1, 0, 2), self.config.sensor_size))

    @functools.cached_property
    def _network_template_batched(self):
        counts = jnp.zeros((1, 1, self.num_channels), jnp.float32)
        shapes = jax.eval_shape(lambda: self.backbone.init(jax.random.PRNGKey(0), None, None, None,
                                                           frames=self._frames(counts),
                                                           frame_mask=jnp.ones((1, 1), bool)))
        return shapes["stream_state"]

    def network_state_template(self):
        return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype),
                                      self._network_template_batched)

    def close_frames(self, tokens, gaps_us, n, open_events, since_us, started):
        cfg = self.config
        return close_frames(tokens, gaps_us, n, cfg.num_channels, cfg.split_by, cfg.frame_length, open_events,
                            since_us, started)

    def close_frames_one_event(self, real, gap_us, open_events, since_us, started):
        return close_frames_one_event(real, gap_us, open_events, since_us, started, self.config.split_by,
                                      self.frame_length)

    def run_frames(self, consts, net_state, counts, mask):
        variables = consts["variables"]
        name = "sdt"
        out, updated = self.backbone.apply(
            {"params": variables["params"][name], "batch_stats": variables["batch_stats"][name],
             "stream_state": net_state},
            None, None, None, frames=self._frames(counts), frame_mask=jnp.asarray(mask, bool),
            mutable=["stream_state"])
        return updated["stream_state"], out.last_hidden_state


__all__ = ["SpikeDrivenTransformerStreamer"]
