"""Spike-Driven Transformer configuration (Yao et al., NeurIPS 2023, "Spike-driven Transformer").

The event tokens of a camera (p·W·H + y·W + x, eventlm's sensor layout) are integrated into T frames
inside the model (SpikingJelly's split by event number or by time), then: the spiking patch splitting stem
(MS_SPS: four conv 3×3 + BN + LIF stages, max-pools where `pooling_stat` says, a relative-position conv
residual), `num_layers` blocks of spike-driven self-attention (SDSA) and a spiking MLP, and a head (mean
over space, LIF, linear, mean over T). Presets, from the reference's training configurations:

    preset        sensor      frames                 layers  dim  heads  mlp  pooling  dvs max-pool  loss
    dvs-gesture   128×128×2   T=16 by number, 128²      2    256    8     4    0111    off           CE
    cifar10-dvs   128×128×2   T=10 by number, 64²       2    256    8     4    0011    on            TET
    shd           700 ch.     10 ms bins (≤ 160)        2    256    8     4    0000    -             CE
    ssc           700 ch.     10 ms bins (≤ 160)        2    256    8     4    0000    -             CE

cifar10-dvs: the reference resized its 128×128 frames to 64×64 (torchvision Resize on tensors: bilinear,
no antialiasing, = the mean of each 2×2 block); `frame_size` does the same inside the model.
shd / ssc (eventlm's audio variant; the reference has no audio model): each 10 ms time bin is one frame whose
700 channel counts are the input features (frame_layout="channels", 1×1 convolutions), and SDSA attends over
the time bins, causally (each bin reads the keys and values of itself and the bins before it), so the model
streams bin by bin.
"""

from typing import List, Optional

from ...configuration_events import EventModelConfig
from ...errors import did_you_mean

SPIKE_MODES = ("lif", "plif")
SPLITS = ("number", "time", "events", "duration")
FRAME_LAYOUTS = ("image", "channels")
ATTENTION_AXES = ("space", "time")

PRESETS = {
    "dvs-gesture": dict(sensor_size=[128, 128, 2], num_frames=16, split_by="number", num_layers=2, hidden_size=256,
                        num_heads=8, mlp_ratio=4, pooling_stat="0111", dvs_mode=False, num_labels=11),
    "cifar10-dvs": dict(sensor_size=[128, 128, 2], frame_size=[64, 64], num_frames=10, split_by="number",
                        num_layers=2, hidden_size=256, num_heads=8, mlp_ratio=4, pooling_stat="0011", dvs_mode=True,
                        num_labels=10, classification_loss="tet", tet_means=1.0, tet_lamb=1e-3),
    "shd": dict(sensor_size=[700, 1, 1], frame_layout="channels", stem_kernel_size=1, split_by="duration",
                frame_us=10_000, num_frames=160, attention_over="time", causal_attention=True, num_layers=2,
                hidden_size=256, num_heads=8, mlp_ratio=4, pooling_stat="0000", num_labels=20),
    "ssc": dict(sensor_size=[700, 1, 1], frame_layout="channels", stem_kernel_size=1, split_by="duration",
                frame_us=10_000, num_frames=160, attention_over="time", causal_attention=True, num_layers=2,
                hidden_size=256, num_heads=8, mlp_ratio=4, pooling_stat="0000", num_labels=35),
}


class SpikeDrivenTransformerConfig(EventModelConfig):
    r"""Configuration of a Spike-Driven Transformer on event frames.

    Args (besides EventModelConfig's; vocab_size is W·H·P + 3: the sensor's channels, then pad, bos, eos):
        sensor_size: [W, H, P] of the camera the tokens come from (the frames' size).
        num_frames: T, frames per sample (the spiking time steps; with split_by "events" / "duration" the most
            frames a sample may fill: longer samples are refused, naming the value to raise).
        split_by: how events become frames. Over the whole sample (SpikingJelly's, as the reference): "number"
            (T segments of equal event counts) | "time" (T equal stretches of time). Closed as events arrive,
            so the model streams: "events" (a frame closes after every `frame_events` events) | "duration"
            (every `frame_us` µs from the sample's first event).
        frame_events / frame_us: the frame length of split_by "events" / "duration".
        frame_size: [W', H'] to resize the frames to (the reference's CIFAR10-DVS Resize(64): torchvision's
            bilinear resize without antialiasing at an integer factor); None keeps the sensor's size.
        frame_layout: "image" (a frame is a P-channel H×W image; the convolutions slide over it) | "channels"
            (every sensor channel is one input feature of a 1×1 frame: audio's cochlea channels).
        stem_kernel_size: the stem's convolution size (3 as the reference; 1 for frame_layout="channels").
        attention_over: "space" (SDSA sums K⊙V over the H·W tokens of each frame, the reference) | "time"
            (over the frames: the audio variant, where tokens are time bins).
        causal_attention: with attention_over="time", each frame reads only itself and earlier frames
            (a running sum; needed to stream); otherwise every frame reads all T.
        hidden_size: embedding width D (the stem widens 2 → D/8 → D/4 → D/2 → D).
        num_layers: SDSA + MLP blocks.
        num_heads: SDSA heads (D must be a multiple).
        mlp_ratio: the MLP's hidden width is mlp_ratio·D.
        pooling_stat: four "0"/"1": whether stem stage i halves the frame with a 3×3 max-pool (stride 2).
        spike_mode: "lif" (τ = 2) | "plif" (a learned τ per layer, initialised to 2).
        dvs_mode: the reference's 3×3 max-pool on K, V, K⊙V and the output inside SDSA (its CIFAR10-DVS
            setting; off for DVS128 Gesture).
        surrogate_alpha: α of the Sigmoid surrogate gradient.
    """

    model_type = "spike-driven-transformer"
    card_description = ("a **Spike-Driven Transformer** (Yao et al., NeurIPS 2023): spiking self-attention "
                        "over event frames, with only additions between spikes")
    card_config_keys = ("sensor_size", "num_frames", "split_by", "hidden_size", "num_layers", "num_heads",
                        "mlp_ratio", "pooling_stat", "spike_mode", "dvs_mode", "vocab_size")

    vocab_size: int = 128 * 128 * 2 + 3
    pad_token_id: int = 128 * 128 * 2
    bos_token_id: int = 128 * 128 * 2 + 1
    eos_token_id: int = 128 * 128 * 2 + 2
    sensor_size: List[int] = (128, 128, 2)
    num_frames: int = 16
    split_by: str = "number"
    frame_events: int = 0
    frame_us: int = 0
    frame_size: Optional[List[int]] = None
    frame_layout: str = "image"
    stem_kernel_size: int = 3
    attention_over: str = "space"
    causal_attention: bool = False
    hidden_size: int = 256
    num_layers: int = 2
    num_heads: int = 8
    mlp_ratio: int = 4
    pooling_stat: str = "0111"
    spike_mode: str = "lif"
    dvs_mode: bool = False
    surrogate_alpha: float = 4.0
    dropout: float = 0.0

    def _check(self):
        super()._check()
        self.sensor_size = [int(s) for s in self.sensor_size]
        self._check_choices([("spike_mode", SPIKE_MODES), ("split_by", SPLITS), ("frame_layout", FRAME_LAYOUTS),
                             ("attention_over", ATTENTION_AXES)])
        self._check_positive_ints(("num_frames", "num_layers", "num_heads", "mlp_ratio", "stem_kernel_size"))
        if len(self.sensor_size) != 3 or min(self.sensor_size) < 1:
            self._fail("sensor_size", "[width, height, polarities] of positive sizes")
        if self.split_by == "events":
            self._check_positive_ints(("frame_events",))
        if self.split_by == "duration":
            self._check_positive_ints(("frame_us",))
        if self.causal_attention and self.attention_over != "time":
            self._fail("causal_attention", "False unless attention_over='time' (a frame's tokens have no order)")
        if self.stem_kernel_size % 2 == 0:
            self._fail("stem_kernel_size", "odd (a centred 'same' convolution)")
        if self.frame_size is not None:
            self.frame_size = [int(s) for s in self.frame_size]
            width, height = self.sensor_size[:2]
            if (len(self.frame_size) != 2 or min(self.frame_size) < 1 or width % self.frame_size[0]
                    or height % self.frame_size[1] or self.frame_layout != "image"):
                self._fail("frame_size", f"[W', H'] dividing the sensor's {width}x{height} (frame_layout='image'), "
                                         "or None")
        channels = self.num_channels
        if self.vocab_size != channels + 3:
            raise ValueError(f"SpikeDrivenTransformerConfig.vocab_size must be the sensor's {channels} channels + 3 "
                             f"special tokens = {channels + 3} for sensor_size {self.sensor_size}, got "
                             f"{self.vocab_size}; build the config with SpikeDrivenTransformerConfig.for_sensor(...)")
        if len(self.pooling_stat) != 4 or set(self.pooling_stat) - {"0", "1"}:
            self._fail("pooling_stat", 'four characters "0"/"1" (e.g. "0111")')
        if self.hidden_size % 8 or self.hidden_size % self.num_heads:
            self._fail("hidden_size", f"a multiple of 8 and of num_heads={self.num_heads}")

    def check_events(self, input_ids, timestamps, valid) -> None:
        """Every sample with events must fill all T frames: enough events (split by number), and no frame
        window without events (split by time, where SpikingJelly raises)."""
        import numpy as np

        from .frames import frames_left_empty

        real = valid & (input_ids >= 0) & (input_ids < self.num_channels)
        counts = real.sum(axis=1)
        if self.split_by in ("events", "duration"):
            from .frames import frames_filled

            filled = frames_filled(input_ids, timestamps, real, self)
            bad = np.flatnonzero(filled > self.num_frames)
            if bad.size:
                i, length = int(bad[0]), self.frame_events if self.split_by == "events" else self.frame_us
                raise ValueError(
                    f"sample {i} fills {int(filled[i])} frames of {length} "
                    f"{'events' if self.split_by == 'events' else 'µs'} (split_by={self.split_by!r}), more than "
                    f"num_frames={self.num_frames}; raise num_frames, lengthen the frames or cut the samples shorter")
            return
        empty = frames_left_empty(counts, [t[r] for t, r in zip(timestamps, real)], self.num_frames, self.split_by)
        bad = np.flatnonzero(empty & (counts > 0))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"sample {i} has {int(counts[i])} events, which leave some of its num_frames={self.num_frames} frames "
                f"(split_by={self.split_by!r}) without events; use fewer frames, longer samples"
                + (", or split_by='number'" if self.split_by == "time" else "")
            )

    @property
    def frame_length(self) -> int:
        """Events (split_by="events") or µs (split_by="duration") per frame; 0 for the whole-sample splits."""
        return {"events": self.frame_events, "duration": self.frame_us}.get(self.split_by, 0)

    @property
    def not_causal_reason(self) -> Optional[str]:
        """Why frame t of this model depends on later events (None: it does not, so it streams frame by frame
        and can predict the next event)."""
        if self.split_by not in ("events", "duration"):
            return (f"split_by={self.split_by!r} cuts a sample into frames only once all its events are in; use "
                    "split_by='events' or 'duration'")
        if self.attention_over == "time" and not self.causal_attention:
            return "attention_over='time' without causal_attention reads later frames; set causal_attention=True"
        return None

    @property
    def streams(self) -> bool:
        """Whether the model can run frame by frame as events arrive (see not_causal_reason)."""
        return self.not_causal_reason is None

    @property
    def num_channels(self) -> int:
        width, height, polarities = self.sensor_size
        return width * height * polarities

    @classmethod
    def for_sensor(cls, sensor_size, **kwargs) -> "SpikeDrivenTransformerConfig":
        """A config for a (W, H, P) camera, with its vocabulary and special tokens laid out as the tokenizer does."""
        channels = int(sensor_size[0]) * int(sensor_size[1]) * int(sensor_size[2])
        tokens = dict(vocab_size=channels + 3, pad_token_id=channels, bos_token_id=channels + 1,
                      eos_token_id=channels + 2)
        return cls(sensor_size=list(sensor_size), **{**tokens, **kwargs})

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SpikeDrivenTransformerConfig":
        """The reference's models: "dvs-gesture"; keyword overrides win (sensor_size too)."""
        if name not in PRESETS:
            raise ValueError(f"unknown Spike-Driven Transformer preset {name!r}{did_you_mean(name, PRESETS)}; "
                             f"choose one of {sorted(PRESETS)}")
        settings = {**PRESETS[name], **overrides}
        return cls.for_sensor(settings.pop("sensor_size"), **settings)


__all__ = ["SpikeDrivenTransformerConfig", "PRESETS"]
