"""Spike-Driven Transformer configuration (Yao et al., NeurIPS 2023, "Spike-driven Transformer").

The event tokens of a camera (p·W·H + y·W + x, eventlm's sensor layout) are integrated into T frames
inside the model (SpikingJelly's split by event number or by time), then: the spiking patch splitting stem
(MS_SPS: four conv 3×3 + BN + LIF stages, max-pools where `pooling_stat` says, a relative-position conv
residual), `num_layers` blocks of spike-driven self-attention (SDSA) and a spiking MLP, and a head (mean
over space, LIF, linear, mean over T). Presets, from the reference's training configurations:

    preset        sensor         T   frames by   layers  dim  heads  mlp  pooling  dvs max-pool
    dvs-gesture   128×128×2     16   number         2    256    8     4    0111    off
"""

from typing import List

from ...configuration_events import EventModelConfig

SPIKE_MODES = ("lif", "plif")
SPLITS = ("number", "time")

PRESETS = {
    "dvs-gesture": dict(sensor_size=[128, 128, 2], num_frames=16, split_by="number", num_layers=2, hidden_size=256,
                        num_heads=8, mlp_ratio=4, pooling_stat="0111", dvs_mode=False, num_labels=11),
}


class SpikeDrivenTransformerConfig(EventModelConfig):
    r"""Configuration of a Spike-Driven Transformer on event frames.

    Args (besides EventModelConfig's; vocab_size is W·H·P + 3: the sensor's channels, then pad, bos, eos):
        sensor_size: [W, H, P] of the camera the tokens come from (the frames' size).
        num_frames: T, frames per sample (the spiking time steps).
        split_by: "number" (T segments of equal event counts) | "time" (T equal stretches of time).
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
        self._check_choices([("spike_mode", SPIKE_MODES), ("split_by", SPLITS)])
        self._check_positive_ints(("num_frames", "num_layers", "num_heads", "mlp_ratio"))
        if len(self.sensor_size) != 3 or min(self.sensor_size) < 1:
            self._fail("sensor_size", "[width, height, polarities] of positive sizes")
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
            raise ValueError(f"unknown Spike-Driven Transformer preset {name!r}; choose one of {sorted(PRESETS)}")
        settings = {**PRESETS[name], **overrides}
        return cls.for_sensor(settings.pop("sensor_size"), **settings)


__all__ = ["SpikeDrivenTransformerConfig", "PRESETS"]
