"""Event frames for frame-based models, built on the device from the tokenized events (inside jit).

SpikingJelly's `integrate_events_by_fixed_frames_number`, reproduced exactly: the events of a sample are
cut into T segments and each segment is counted per pixel and polarity into a (P, H, W) frame.
    split_by="number": N real events, d = N // T; segment i holds events [i·d, (i+1)·d), the last one
        [(T−1)·d, N) (so with N < T every event lands in the last frame);
    split_by="time": d = (t_last − t_first) // T (integer µs); segment i holds t ∈ [t_first + i·d,
        t_first + (i+1)·d), the last one everything from t_first + (T−1)·d on. (SpikingJelly raises on
        an empty segment; here it stays zero, and the model's input check names the sample instead.)
Frames closed as events arrive (what streaming needs; the frame count varies per sample, at most T):
    split_by="events": event k (k-th real event) lies in frame k // frame_events;
    split_by="duration": an event at t lies in frame (t − t_first) // frame_us.
    A sample fills frames 0 … (that of its last event); the rest stay zero and are masked by the model.
    Events past frame T − 1 land in it (the model's input check refuses such samples first).
A token p·W·H + y·W + x (eventlm's sensor layout) is exactly the flat index of (p, y, x) in a (P, H, W)
frame, so counting needs no decoding; special tokens (ids ≥ W·H·P) and padding carry no event.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SPLITS = ("number", "time")


def frame_of_events(tokens, timestamps_us, valid, num_frames: int, split_by: str, frame_length: int = 0):
    """Frame index (B, L) int32 of every event; −1 where it carries none (padding, special tokens).
    tokens are already masked to real events by `valid` (B, L); timestamps_us (B, L) int32, any offset;
    frame_length: events or µs per frame of split_by "events" / "duration"."""
    rank = jnp.cumsum(valid, axis=1) - 1  # k: the event's index among the sample's real events
    big = jnp.iinfo(jnp.int32).max
    if split_by == "events":
        frame = jnp.minimum(rank // frame_length, num_frames - 1)
    elif split_by == "duration":
        first = jnp.min(jnp.where(valid, timestamps_us, big), axis=1, keepdims=True)
        frame = jnp.minimum((timestamps_us - first) // frame_length, num_frames - 1)
    elif split_by == "number":
        n = jnp.sum(valid, axis=1, keepdims=True)
        width = n // num_frames
        frame = jnp.where(width > 0, jnp.minimum(rank // jnp.maximum(width, 1), num_frames - 1), num_frames - 1)
    elif split_by == "time":
        first = jnp.min(jnp.where(valid, timestamps_us, big), axis=1, keepdims=True)
        last = jnp.max(jnp.where(valid, timestamps_us, -big), axis=1, keepdims=True)
        width = (last - first) // num_frames
        since = timestamps_us - first
        frame = jnp.where(width > 0, jnp.minimum(since // jnp.maximum(width, 1), num_frames - 1), num_frames - 1)
    else:
        raise ValueError(f"split_by must be one of {SPLITS}, got {split_by!r}")
    return jnp.where(valid, frame, -1).astype(jnp.int32)


def events_to_frames(tokens, timestamps_us, valid, sensor_size, num_frames: int, split_by: str = "number",
                     frame_length: int = 0):
    """(B, T, P, H, W) float32 event counts of each frame (see the module docstring).
    sensor_size: (W, H, P); tokens (B, L) ids, valid (B, L) bool (real events), timestamps_us (B, L) int."""
    channels = int(np.prod(sensor_size))
    valid = valid & (tokens >= 0) & (tokens < channels)
    frame = frame_of_events(tokens, timestamps_us, valid, num_frames, split_by, frame_length)
    batch = jnp.broadcast_to(jnp.arange(tokens.shape[0])[:, None], tokens.shape)
    counts = jnp.zeros((tokens.shape[0], num_frames, channels), jnp.float32)
    counts = counts.at[batch, jnp.maximum(frame, 0), jnp.where(valid, tokens, 0)].add(valid.astype(jnp.float32))
    return counts_to_frames(counts, sensor_size)


def counts_to_frames(counts, sensor_size):
    """(B, T, W·H·P) event counts per token → (B, T, P, H, W) frames (token p·W·H + y·W + x is the flat index)."""
    width, height, polarities = sensor_size
    return counts.reshape(counts.shape[:2] + (polarities, height, width))


def frames_to_input(config, frames):
    """(B, T, P, H, W) frames → the network's (T, B, H, W, C) input: resized (frame_size), laid out as images
    (C = polarities) or as 1×1 frames of every sensor channel (frame_layout="channels", token order)."""
    if config.frame_size is not None:
        frames = resize_frames(frames, config.frame_size)
    if config.frame_layout == "channels":
        return frames.reshape(frames.shape[:2] + (1, 1, -1)).transpose(1, 0, 2, 3, 4)
    return frames.transpose(1, 0, 3, 4, 2)


def frames_used(tokens, timestamps_us, valid, num_channels: int, num_frames: int, split_by: str,
                frame_length: int = 0):
    """(B, T) bool: the frames a sample fills (all T for the whole-sample splits when it has events; frames
    0 … that of its last event for "events" / "duration"); none for a sample without events."""
    valid = valid & (tokens >= 0) & (tokens < num_channels)
    has = jnp.any(valid, axis=1, keepdims=True)
    frames = jnp.arange(num_frames)[None, :]
    if split_by in ("number", "time"):
        return jnp.broadcast_to(has, (tokens.shape[0], num_frames))
    last = jnp.max(frame_of_events(tokens, timestamps_us, valid, num_frames, split_by, frame_length), axis=1)
    return frames <= last[:, None]


def frame_context(tokens, timestamps_us, valid, num_channels: int, num_frames: int, split_by: str,
                  frame_length: int):
    """(B, L) int32: for every position k, the last frame complete at k (−1: none), for the next-event head.
    "events": the frame of k's event closes with it when k is its frame_events-th event; "duration": a frame
    is known complete only once an event at or after its end arrives, so k reads the frame before its own.
    Special tokens and padding read what the event before them read (a running maximum)."""
    real = valid & (tokens >= 0) & (tokens < num_channels)
    if split_by == "events":
        rank = jnp.cumsum(real, axis=1) - 1
        own = jnp.minimum((rank + 1) // frame_length, num_frames) - 1
    else:
        own = frame_of_events(tokens, timestamps_us, real, num_frames, split_by, frame_length) - 1
    own = jnp.where(real, own, -1).astype(jnp.int32)
    return jax.lax.cummax(own, axis=1)


def frames_filled(tokens, timestamps_us, valid, config) -> np.ndarray:
    """Host: (B,) how many frames each sample fills with split_by "events" / "duration" (uncapped; 0 for a
    sample without events): `close_frames` run over the whole sample from a fresh stream."""
    ts = np.asarray(timestamps_us, np.int64)
    gaps = np.diff(ts, axis=1, prepend=ts[:, :1])
    ids = np.where(valid, tokens, -1)
    fresh = np.zeros(len(ids), np.int64)
    _, closed, open_events, _, _, _ = close_frames(ids, gaps, np.full(len(ids), ids.shape[1]), config.num_channels,
                                                config.split_by, config.frame_length, fresh, fresh, fresh > 0)
    return closed + (open_events > 0)


def resize_frames(frames, frame_size):
    """(…, H, W) frames → (…, H', W'): torchvision's Resize on tensors as the reference ran it (bilinear,
    align_corners=False, no antialiasing) at integer factors f = W / W': output i samples input (i + ½)·f − ½,
    i.e. pixel f·i + (f − 1)/2 for odd f and the mean of pixels f·i + f/2 − 1 and f·i + f/2 for even f
    (f = 2: the mean of each 2×2 block)."""
    out = frames
    for axis, size in ((-1, frame_size[0]), (-2, frame_size[1])):
        factor = out.shape[axis] // size
        if factor == 1:
            continue
        take = lambda start: jnp.take(out, jnp.arange(size) * factor + start, axis=axis)  # noqa: E731
        out = take((factor - 1) // 2) if factor % 2 else 0.5 * (take(factor // 2 - 1) + take(factor // 2))
    return out


def frames_left_empty(num_events: np.ndarray, timestamps_us, num_frames: int, split_by: str) -> np.ndarray:
    """Host check: (B,) True where a sample leaves a frame without events (too few events, or by time a
    silent stretch or a duration under T µs), which SpikingJelly refuses for split_by="time"."""
    n = np.asarray(num_events)
    if split_by == "number":
        return n < num_frames
    out = np.zeros(n.shape, bool)
    for b, (count, t) in enumerate(zip(n, timestamps_us)):
        t = np.asarray(t[:count], np.int64)
        width = (t[-1] - t[0]) // num_frames if count else 0
        if width <= 0:
            out[b] = True
            continue
        frame = np.minimum((t - t[0]) // width, num_frames - 1)
        out[b] = np.unique(frame).size < num_frames
    return out


def close_frames(tokens, gaps_us, n, num_channels: int, split_by: str, frame_length: int, open_events, since_us,
                 started):
    """Host, incremental (streaming): the frames of a chunk of events, continuing from a stream's open frame.

    tokens (B, L) ids, gaps_us (B, L) int64 µs before each token, n (B,) valid tokens; the stream's open frame
    holds `open_events` (B,) events, began `since_us` (B,) µs before the newest token seen, and `started` (B,)
    says whether any real event was seen (a "duration" stream's frames start at its first real event).
    Returns (offset (B, L): the frame of each real event counted from the open frame, −1 for others;
    closed (B,): frames closed by the chunk (frames 0 … closed − 1; frame `closed` is the new open one);
    open_events, since_us, started after the chunk; known (B, L): the frames closed once each token is in,
    so token k's last complete frame is known − 1, the next-event head's rule, `frame_context`). The same rule
    as `frame_of_events` over a whole sample: a frame closes when its frame_events-th event arrives, or when a
    real event arrives at or after its end (special tokens carry time but close nothing, as they place no
    event)."""
    batch, length = tokens.shape
    valid = np.arange(length)[None, :] < np.asarray(n)[:, None]
    real = valid & (tokens >= 0) & (tokens < num_channels)
    has = real.any(axis=1)
    rows = np.arange(batch)
    open_events, since_us = np.asarray(open_events, np.int64), np.asarray(since_us, np.int64)
    started = np.asarray(started, bool)
    if split_by == "events":
        total = open_events[:, None] + np.cumsum(real, axis=1) - 1
        offset = np.where(real, total // frame_length, -1)
        count = open_events + real.sum(axis=1)
        known = (open_events[:, None] + np.cumsum(real, axis=1)) // frame_length
        return offset, count // frame_length, count % frame_length, since_us, started | has, known
    if split_by != "duration":
        raise ValueError(f"split_by={split_by!r} frames need the whole sample; streaming needs 'events' or 'duration'")
    clock = np.cumsum(np.where(valid, gaps_us, 0), axis=1)  # µs since the newest token before the chunk
    first = np.argmax(real, axis=1)
    base = np.where(started, since_us, -clock[rows, first])  # a new stream's frame 0 starts at its first event
    elapsed = base[:, None] + clock
    offset = np.where(real, elapsed // frame_length, -1)
    closed = np.where(has, offset.max(axis=1), 0)
    in_open = (real & (offset == closed[:, None])).sum(axis=1)
    open_after = np.where(closed > 0, in_open, open_events + in_open)
    since_after = np.where(started | has, base + clock[:, -1] - closed * frame_length, 0)
    known = np.maximum(np.maximum.accumulate(offset, axis=1), 0)
    return offset, closed, open_after, since_after, started | has, known


def close_frames_one_event(real, gap_us, open_events, since_us, started, split_by: str, frame_length: int):
    """Device (inside jit), one event of one stream: `close_frames` for a chunk of a single token, as
    generation feeds them. real: the token places an event; gap_us int32 µs before it (≤ 2^30); open_events,
    since_us int32 (since_us < 2^30: the caller checks), started bool. Returns (closed: frames the event
    closes, int32; joins_closed: the event lies in the first of them (a frame filled by count), else in the
    open frame after them; open_events, since_us, started after it). The event's own last complete frame is
    closed − 1 (`known` = closed)."""
    real = jnp.asarray(real, bool)
    open_events, since_us = jnp.asarray(open_events, jnp.int32), jnp.asarray(since_us, jnp.int32)
    if split_by == "events":
        count = open_events + real.astype(jnp.int32)
        closed = count // frame_length
        return closed, closed > 0, count % frame_length, since_us, started | real
    if split_by != "duration":
        raise ValueError(f"split_by={split_by!r} frames need the whole sample; streaming needs 'events' or 'duration'")
    # elapsed = since + gap µs in the open frame, split so that no int32 sum passes 2^31
    part = gap_us % frame_length + since_us
    closed = jnp.where(real & started, gap_us // frame_length + part // frame_length, 0)
    since_after = jnp.where(real, jnp.where(started, part % frame_length, 0),
                            jnp.where(started, since_us + gap_us, 0))  # special tokens carry time, close nothing
    open_after = jnp.where(closed > 0, real.astype(jnp.int32), open_events + real.astype(jnp.int32))
    return closed.astype(jnp.int32), jnp.zeros((), bool), open_after, since_after, started | real
