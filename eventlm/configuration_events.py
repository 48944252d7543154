"""`EventModelConfig`: the config fields every event model shares (the heads, time and tokens read them).

A model family's config subclasses it, adds its own fields, sets `model_type` (and its own defaults where
they differ) and extends `_check`. Importing this module needs no jax.
"""

import math
from typing import Optional

from transformers import PretrainedConfig

CLASSIFIER_POOLINGS = ("mean", "timepool", "last")
GAP_CONVENTIONS = ("before", "after")
READOUT_CONVENTIONS = ("masked", "reference")
CLASSIFICATION_LOSSES = ("cross_entropy", "tet")
# size limits checked before a model is built (larger values would allocate gigabytes or trace for minutes)
MAX_VOCAB_SIZE = 2**24  # token ids stay exact as float32 (the stream state holds them so)
MAX_HIDDEN_SIZE = 2**14
MAX_NUM_LABELS = 2**20


class EventModelConfig(PretrainedConfig):
    r"""The shared part of an event model's configuration.

    Args:
        vocab_size: number of token ids (sensor channels + special tokens).
        pad_token_id / bos_token_id / eos_token_id: special tokens (the pad never reads a real row).
        hidden_size: width of the backbone's first layer (its output width is `output_hidden_size`).
        time_unit_us: µs per model time unit (Δt enters the model as float32 in this unit).
        layer_norm_eps: eps of the layer norms (the next-event head's among them).
        dropout: dropout rate.
        classifier_pooling: "mean" | "timepool" | "last" readout of the classification head.
        num_mixture_components: log-normal mixture components of the next-event time gap.
        gap_convention: "before" (default: event k carries the gap t_k − t_{k−1}, the first event 0) |
            "after" (reference EventSSM: event k carries t_{k+1} − t_k and the last event of a sample only
            marks the end time; it is dropped as the reference's collate function drops it).
        readout_convention: "masked" (default: a position counts when it holds any valid event; timepool
            readout normalised by its own weights) | "reference" (EventSSM's reference: only complete
            windows count, and the timepool readout divides by the whole duration).
        timepool_eps: the eps added to the timepool weights.
        classification_loss: "cross_entropy" (of the classifier on the pooled readout) | "tet" (Deng et al.
            2022, "Temporal Efficient Training", as the Spike-Driven Transformer's reference trains CIFAR10-DVS:
            the cross-entropy of every pooled position's own logits, averaged, times (1 − tet_lamb), plus
            tet_lamb × the mean squared distance of those logits from tet_means). Needs classifier_pooling
            "mean", where the mean of the positions' logits is the model's prediction.
        tet_means / tet_lamb: the TET regulariser's target and weight.
    """

    vocab_size: int = 703
    pad_token_id: Optional[int] = 700
    bos_token_id: Optional[int] = 701
    eos_token_id: Optional[int] = 702
    hidden_size: int = 96
    time_unit_us: float = 1000.0
    layer_norm_eps: float = 1e-6
    dropout: float = 0.1
    classifier_pooling: str = "mean"
    num_mixture_components: int = 8
    gap_convention: str = "before"
    readout_convention: str = "masked"
    timepool_eps: float = 1e-6
    classification_loss: str = "cross_entropy"
    tet_means: float = 1.0
    tet_lamb: float = 1e-3

    # model cards (eventlm.training.card): what the model is, in one sentence after "X is", and the settings
    # its card lists (None: every field the config class adds)
    card_description = "an event model"
    card_config_keys = None

    def __post_init__(self, **kwargs):
        n = kwargs.get("num_labels")  # checked first: transformers builds an id2label entry per label
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NUM_LABELS):
            raise ValueError(f"{type(self).__name__}.num_labels must be a positive integer ≤ {MAX_NUM_LABELS:,}, "
                             f"got {n!r}")
        super().__post_init__(**kwargs)
        self._check()

    def _fail(self, name: str, requirement: str):
        raise ValueError(f"{type(self).__name__}.{name} must be {requirement}, got {getattr(self, name)!r}")

    def _check_choices(self, choices):
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                self._fail(name, f"one of {allowed}")

    def _check_positive_ints(self, names, limit: Optional[int] = None):
        """Positive integers, at most `limit` where given (sizes: refused before anything is allocated)."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(name, "a positive integer")
            if limit is not None and value > limit:
                self._fail(name, f"at most {limit:,} (a larger model would not fit in memory)")

    def _check_finite(self, names, minimum: float = 0.0, inclusive: bool = False):
        """Finite real numbers > minimum (≥ with inclusive): NaN and ±Infinity from a config.json are refused."""
        for name in names:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                value >= minimum if inclusive else value > minimum)
            if not ok:
                self._fail(name, f"a finite number {'≥' if inclusive else '>'} {minimum:g}")

    def _check(self):
        """Raise ValueError naming the setting and its value when the settings cannot build a model."""
        self._check_choices([("classifier_pooling", CLASSIFIER_POOLINGS), ("gap_convention", GAP_CONVENTIONS),
                             ("readout_convention", READOUT_CONVENTIONS),
                             ("classification_loss", CLASSIFICATION_LOSSES)])
        if self.classification_loss == "tet" and self.classifier_pooling != "mean":
            self._fail("classifier_pooling", "'mean' with classification_loss='tet' (TET scores each position's "
                                             "logits, whose mean must be the prediction)")
        self._check_finite(("tet_means",), minimum=-math.inf)
        if not 0.0 <= self.tet_lamb <= 1.0:
            self._fail("tet_lamb", "in [0, 1]")
        self._check_positive_ints(("vocab_size",), MAX_VOCAB_SIZE)
        self._check_positive_ints(("hidden_size",), MAX_HIDDEN_SIZE)
        self._check_positive_ints(("num_mixture_components",), 1024)
        self._check_finite(("time_unit_us", "layer_norm_eps"))
        self._check_finite(("timepool_eps",), inclusive=True)
        self._check_finite(("dropout",), inclusive=True)
        if not 0.0 <= self.dropout < 1.0:
            self._fail("dropout", "in [0, 1)")
        if self.id2label is not None and len(self.id2label) > MAX_NUM_LABELS:
            self._fail("num_labels", f"at most {MAX_NUM_LABELS:,}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < self.vocab_size):
                raise ValueError(f"{name} {value!r} lies outside the vocabulary of {self.vocab_size} (token ids "
                                 f"0 … {self.vocab_size - 1}); set it to a token id of the vocabulary or None")

    def check_events(self, input_ids, timestamps, valid) -> None:
        """Raise ValueError naming the sample when valid events (B, L) cannot feed this model; called by
        the shared input checks on concrete inputs (a model family's own rule; none by default)."""

    @property
    def total_stride(self) -> int:
        """Events per output position of the backbone (1: it does not pool)."""
        return 1

    @property
    def output_hidden_size(self) -> int:
        """Width of the backbone's last hidden state."""
        return self.hidden_size


__all__ = ["EventModelConfig"]
