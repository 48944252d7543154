"""EventSSM configuration (Schöne et al. 2024, "Scalable Event-by-event Processing of Neuromorphic
Sensory Signals With Deep State-Space Models", arXiv 2404.18508).

`EventSSMConfig.from_preset(name)` gives the paper's models. Their sizes are those of the reference
code's model settings (configs/model/{shd/medium, ssc/medium, dvs/small, shd/tiny}.yaml):

    preset        width  state  blocks  stages x layers  stride  pooling   expand  norm   readout
    shd             96    128     16        2 x 3           8     avg         1    layer  mean
    ssc             96    128      8        2 x 3           8     avg         2    batch  mean
    dvs-gesture    128    128      8        2 x 3          16     timepool    2    layer  timepool
    tiny            16     16      2        1 x 6          32     timepool    1    layer  timepool

The vocabulary is the sensor's channels followed by three special tokens (pad, bos, eos), the layout
of eventlm's tokenizer. Timestamps arrive as int µs; the model works in units of `time_unit_us` µs
(1 ms, as the reference, by default).
"""

from ...configuration_events import CLASSIFIER_POOLINGS, GAP_CONVENTIONS, READOUT_CONVENTIONS, EventModelConfig
from ...errors import did_you_mean

POOLING_MODES = ("last", "avg", "timepool")
DISCRETIZATIONS = ("async", "zoh", "dirac")
NORMS = ("layer", "batch")
POOLING_KEEPS = ("last", "first")
SCAN_IMPLEMENTATIONS = ("auto", "sequential", "associative")

# channels, labels and the model settings of each preset (the reference yaml values)
_AUDIO = dict(channels=700, pad_token_id=700, bos_token_id=701, eos_token_id=702, vocab_size=703)
_DVS = dict(channels=128 * 128 * 2, pad_token_id=32768, bos_token_id=32769, eos_token_id=32770, vocab_size=32771)
PRESETS = {
    "shd": dict(
        **_AUDIO, num_labels=20, hidden_size=96, state_size=128, num_ssm_blocks=16, num_stages=2,
        num_layers_per_stage=3, pooling_stride=8, pooling_mode="avg", state_expansion_factor=1,
        hidden_expansion_factor=1, discretization="async", conj_sym=False, clip_eigs=False, dt_min=0.004,
        dt_max=0.1, norm="layer", batchnorm_momentum=0.95, dropout=0.23, classifier_pooling="mean",
    ),
    "ssc": dict(
        **_AUDIO, num_labels=35, hidden_size=96, state_size=128, num_ssm_blocks=8, num_stages=2,
        num_layers_per_stage=3, pooling_stride=8, pooling_mode="avg", state_expansion_factor=2,
        hidden_expansion_factor=2, discretization="async", conj_sym=True, clip_eigs=False, dt_min=0.0015,
        dt_max=0.1, norm="batch", batchnorm_momentum=0.95, dropout=0.23, classifier_pooling="mean",
    ),
    "dvs-gesture": dict(
        **_DVS, num_labels=11, hidden_size=128, state_size=128, num_ssm_blocks=8, num_stages=2,
        num_layers_per_stage=3, pooling_stride=16, pooling_mode="timepool", state_expansion_factor=2,
        hidden_expansion_factor=2, discretization="async", conj_sym=False, clip_eigs=True, dt_min=0.001,
        dt_max=0.1, norm="layer", batchnorm_momentum=0.95, dropout=0.25, classifier_pooling="timepool",
    ),
    "tiny": dict(
        **_AUDIO, num_labels=20, hidden_size=16, state_size=16, num_ssm_blocks=2, num_stages=1,
        num_layers_per_stage=6, pooling_stride=32, pooling_mode="timepool", state_expansion_factor=1,
        hidden_expansion_factor=1, discretization="async", conj_sym=False, clip_eigs=False, dt_min=0.004,
        dt_max=0.1, norm="layer", batchnorm_momentum=0.95, dropout=0.1, classifier_pooling="timepool",
    ),
}


class EventSSMConfig(EventModelConfig):
    r"""Configuration of an EventSSM: token embedding → stages of S5 blocks with event pooling → head.

    The shared fields (vocabulary and special tokens, time_unit_us, layer_norm_eps, dropout,
    classifier_pooling, num_mixture_components, gap_convention, readout_convention, timepool_eps) are
    EventModelConfig's (eventlm/configuration_events.py); for EventSSM, dropout is one mask per sample and
    feature, shared over events (as the reference), and readout_convention "reference" counts only complete
    windows, floor(n / total stride). Its own:

    Args:
        hidden_size: width H of the first stage.
        state_size: S5 state size P of the first stage (complex states; P/2 stored with conj_sym).
        num_ssm_blocks: HiPPO-LegS blocks of the first stage's state matrix init; the block size
            state_size / num_ssm_blocks is kept in later stages.
        num_stages, num_layers_per_stage: stages × S5 blocks; the first block of each stage pools.
        pooling_stride: events per pooling window (1: no pooling).
        pooling_mode: "last" | "avg" | "timepool": how the skip and D paths summarise a window
            (timepool: mean weighted by each event's gap Δt + eps).
        state_expansion_factor, hidden_expansion_factor: growth of state size and width per stage
            (stage i has P·f^i states and H·g^i width; its first block widens).
        discretization: "async" (paper; input gain (exp(Λs)−1)/Λ) | "zoh" ((exp(ΛsΔt)−1)/Λ) | "dirac" (1).
        conj_sym: keep half of the conjugate-pair eigenvalues, output 2·Re(C̃x).
        clip_eigs: clip Re(Λ) ≤ −1e−4 (stable).
        dt_min, dt_max: range of the learned per-state step s = exp(log_step) at init.
        step_rescale: multiplies every step s (evaluate at another time scale).
        norm: "layer" | "batch" pre-norm (batch norm statistics over valid events only).
        batchnorm_momentum, batchnorm_eps: batch norm settings.
        pooling_keep: "last" (default: a window's state is the one after its last valid event) |
            "first" (reference: the state after the window's first event).
        scan_implementation: "auto" (lax.scan on CPU, jax.lax.associative_scan on accelerators) |
            "sequential" | "associative": how the linear recurrences run (same numbers).
    """

    model_type = "eventssm"
    card_description = ("an **EventSSM** (Schöne et al. 2024, [arXiv 2404.18508](https://arxiv.org/abs/2404.18508)):\n"
                        "S5 state-space layers discretized event by event with the real time gap between events")
    card_config_keys = ("hidden_size", "state_size", "num_ssm_blocks", "num_stages", "num_layers_per_stage",
                        "pooling_stride", "pooling_mode", "discretization", "norm", "dropout", "classifier_pooling",
                        "vocab_size", "time_unit_us")

    state_size: int = 128
    num_ssm_blocks: int = 16
    num_stages: int = 2
    num_layers_per_stage: int = 3
    pooling_stride: int = 8
    pooling_mode: str = "avg"
    state_expansion_factor: int = 1
    hidden_expansion_factor: int = 1
    discretization: str = "async"
    conj_sym: bool = False
    clip_eigs: bool = False
    dt_min: float = 0.004
    dt_max: float = 0.1
    step_rescale: float = 1.0
    norm: str = "layer"
    batchnorm_momentum: float = 0.95
    batchnorm_eps: float = 1e-5
    pooling_keep: str = "last"
    scan_implementation: str = "auto"

    def _check(self):
        """Raise ValueError naming the setting and its value when the settings cannot build a model."""
        super()._check()
        self._check_choices([
            ("pooling_mode", POOLING_MODES), ("discretization", DISCRETIZATIONS), ("norm", NORMS),
            ("pooling_keep", POOLING_KEEPS), ("scan_implementation", SCAN_IMPLEMENTATIONS),
        ])
        self._check_positive_ints(("state_size", "num_ssm_blocks"), 2**16)
        self._check_positive_ints(("num_stages",), 16)
        self._check_positive_ints(("num_layers_per_stage",), 64)
        self._check_positive_ints(("pooling_stride",), 4096)
        self._check_positive_ints(("state_expansion_factor", "hidden_expansion_factor"), 16)
        self._check_finite(("dt_min", "dt_max", "step_rescale", "batchnorm_eps"))
        self._check_finite(("batchnorm_momentum",), inclusive=True)
        if not self.batchnorm_momentum <= 1:
            self._fail("batchnorm_momentum", "in [0, 1]")
        if self.state_size % self.num_ssm_blocks:
            raise ValueError(
                f"EventSSMConfig.state_size ({self.state_size}) must be a multiple of num_ssm_blocks "
                f"({self.num_ssm_blocks})"
            )
        if self.ssm_block_size > 4096:  # its HiPPO matrix is diagonalised at init (P² memory, P³ time)
            raise ValueError(f"EventSSMConfig: state_size / num_ssm_blocks = {self.ssm_block_size} is too large a "
                             "HiPPO block (at most 4,096); raise num_ssm_blocks or lower state_size")
        last = self.num_stages - 1
        if self.stage_hidden_size(last) > 2**16 or self.stage_state_size(last) > 8192 \
                or self.total_stride > 2**31:  # (init builds a P × P eigenvector matrix per stage)
            raise ValueError(
                f"EventSSMConfig: the last stage would be {self.stage_hidden_size(last):,} wide with "
                f"{self.stage_state_size(last):,} states and pool {self.total_stride:,} events per position "
                "(limits 65,536, 8,192, 2^31); lower state_size, num_stages, the expansion factors or pooling_stride")
        if self.conj_sym and self.ssm_block_size % 2:
            raise ValueError(
                f"conj_sym=True needs an even SSM block size, got state_size / num_ssm_blocks = {self.ssm_block_size}"
            )
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        if not self.step_rescale > 0:
            self._fail("step_rescale", "positive")

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def ssm_block_size(self) -> int:
        """Size of one HiPPO block of the state matrix (kept in every stage)."""
        return self.state_size // self.num_ssm_blocks

    @property
    def total_stride(self) -> int:
        """Events per position of the last stage."""
        return self.pooling_stride ** self.num_stages

    def block_plan(self):
        """(stage, layer, name, h_in, h_out, state_size, stride) of every block, in order: the one plan the
        model, its streaming step and the CPU kernel build from (name: the block's variables subtree)."""
        plan, h_in = [], self.hidden_size
        for stage in range(self.num_stages):
            h_out, p = self.stage_hidden_size(stage), self.stage_state_size(stage)
            for layer in range(self.num_layers_per_stage):
                stride = self.pooling_stride if layer == 0 else 1
                plan.append((stage, layer, f"stage{stage}_block{layer}", h_in, h_out, p, stride))
                h_in = h_out
        return plan

    def stage_hidden_size(self, stage: int) -> int:
        return self.hidden_size * self.hidden_expansion_factor ** stage

    def stored_state_size(self, state_size: int) -> int:
        """Complex states a block of `state_size` keeps: half of them with conj_sym (their conjugates are implied)."""
        return state_size // 2 if self.conj_sym else state_size

    def stage_state_size(self, stage: int) -> int:
        return self.state_size * self.state_expansion_factor ** stage

    @property
    def output_hidden_size(self) -> int:
        """Width of the last hidden state."""
        return self.stage_hidden_size(self.num_stages - 1)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "EventSSMConfig":
        """The paper's models: "shd" | "ssc" | "dvs-gesture" | "tiny"; keyword overrides win."""
        if name not in PRESETS:
            raise ValueError(f"unknown EventSSM preset {name!r}{did_you_mean(name, PRESETS)}; choose one of "
                             f"{sorted(PRESETS)}")
        settings = {k: v for k, v in PRESETS[name].items() if k != "channels"}
        settings.update(overrides)
        return cls(**settings)


__all__ = ["EventSSMConfig", "PRESETS"]
