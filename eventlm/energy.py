"""Theoretical energy of an event model's inference, the spiking-network way (Yao et al. 2023, Section 5):

    E = E_MAC · Σ MACs(layers fed real values) + E_AC · Σ SOPs(layers fed spikes),
    SOPs = firing rate of the layer's input × its MACs (over all T time steps),
    E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm; Horowitz 2014).

Counted: every `nn.Conv` and `nn.Dense` the forward pass calls (found by intercepting their calls, so any
model works, EventSSM included): MACs = output elements × fan-in, per sample. A layer whose input holds
only 0 and 1 is fed spikes and does accumulates only (SOPs); any other is fed real values (MACs), as the
spiking first conv on event-count frames is. Also counted: spike sums (`eventlm.spiking.SpikeSum`, the
column sum of K⊙V in spike-driven attention): one addition per input element, so SOPs = the spikes summed.
Not counted: batch norm (foldable into the conv), the masks of spike-driven attention (K⊙V and Q⊙·, logical
ANDs of spikes), sums of non-binary values (a causal or whole-clip sum over frames), max-pools, and the
recurrences of EventSSM's S5 layers; the total line says which operations it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .spiking import SpikeSum

E_MAC_PJ, E_AC_PJ = 4.6, 0.9


@dataclass
class LayerEnergy:
    name: str
    macs: float  # per sample
    firing_rate: float  # of its input; nan for real-valued input
    spiking_input: bool

    @property
    def sops(self) -> float:
        return self.firing_rate * self.macs if self.spiking_input else 0.0

    @property
    def energy_pj(self) -> float:
        return E_AC_PJ * self.sops if self.spiking_input else E_MAC_PJ * self.macs


@dataclass
class EnergyReport:
    layers: List[LayerEnergy]
    samples: int

    @property
    def energy_pj(self) -> float:
        return float(sum(layer.energy_pj for layer in self.layers))

    def table(self) -> str:
        """A markdown table: one row per layer, then the totals."""
        rows = ["| layer | input | firing rate | MACs | SOPs | energy (µJ) |", "|---|---|---|---|---|---|"]
        for layer in self.layers:
            rate = f"{layer.firing_rate:.4f}" if layer.spiking_input else "–"
            rows.append(f"| {layer.name} | {'spikes' if layer.spiking_input else 'real'} | {rate} | "
                        f"{layer.macs:,.0f} | {layer.sops:,.0f} | {layer.energy_pj / 1e6:.4f} |")
        macs = sum(layer.macs for layer in self.layers if not layer.spiking_input)
        sops = sum(layer.sops for layer in self.layers)
        rows.append(f"| **total** (per sample, {self.samples} samples; conv, dense and spike sums) | | | {macs:,.0f} MAC | "
                    f"{sops:,.0f} SOP | **{self.energy_pj / 1e6:.4f}** |")
        return "\n".join(rows)


def energy_report(model, input_ids, timestamps, attention_mask=None, params=None, batch_stats=None) -> EnergyReport:
    """Per-layer MACs, input firing rates and SOPs of `model` on one batch, and the theoretical energy per
    sample (E_MAC = 4.6 pJ, E_AC = 0.9 pJ)."""
    from .modeling_events import prepare_inputs

    ids, dt, mask = prepare_inputs(model.config, input_ids, timestamps, attention_mask)
    records = []

    def record(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (nn.Conv, nn.Dense, SpikeSum)):
            return next_fun(*args, **kwargs)
        x = args[0]
        out = next_fun(*args, **kwargs)
        if isinstance(module, SpikeSum):  # one accumulate per input element
            operations = jnp.size(x)
        else:  # output elements × fan-in
            operations = jnp.size(out) * x.shape[-1] * (int(np.prod(module.kernel_size)) if isinstance(module, nn.Conv)
                                                         else 1)
        binary = jnp.all((x == 0) | (x == 1))
        records.append(("/".join(module.path), operations, binary, jnp.mean(x)))
        return out

    def run(variables):
        with nn.intercept_methods(record):
            model.module.apply(variables, ids, dt, mask)
        return [r[1:] for r in records]

    variables = model._variables_for(params, batch_stats)
    values = jax.jit(run)(variables)
    batch = ids.shape[0]
    layers = [LayerEnergy(name, float(macs) / batch, float(rate) if bool(binary) else float("nan"), bool(binary))
              for (name, *_), (macs, binary, rate) in zip(records, values)]  # filled once, while tracing
    return EnergyReport(layers, batch)


__all__ = ["energy_report", "EnergyReport", "LayerEnergy", "E_MAC_PJ", "E_AC_PJ"]


# ------------------------------------------------------------------------------------------------
# `eventlm energy MODEL DATASET`
# ------------------------------------------------------------------------------------------------

CARD_SECTION = "## Theoretical energy"


def dataset_energy(model, tokenizer, dataset, batch_size: int = 8, max_samples: int = 64) -> EnergyReport:
    """energy_report over the first `max_samples` rows of a Hub event dataset (rows with t/x/y/p), averaged
    per sample over the batches."""
    from .data.collator import EventCollator
    from .training.trainer import fetch_rows

    collator = EventCollator(tokenizer, pad_to_multiple_of=64)
    total = min(len(dataset), max_samples)
    if total == 0:
        raise ValueError("the dataset has no rows to measure the energy on")
    reports = []
    for start in range(0, total, batch_size):
        batch = collator(fetch_rows(dataset, range(start, min(start + batch_size, total))))
        reports.append(energy_report(model, batch["input_ids"], batch["timestamps"], batch["attention_mask"]))
    layers = []
    for parts in zip(*(r.layers for r in reports)):  # sample-weighted means over the batches
        weights = np.array([r.samples for r in reports], np.float64)
        mean = lambda values: float(np.sum(weights * np.array(values)) / weights.sum())  # noqa: E731
        layers.append(LayerEnergy(parts[0].name, mean([p.macs for p in parts]),
                                  mean([p.firing_rate for p in parts]), parts[0].spiking_input))
    return EnergyReport(layers, total)


def write_card_section(folder, report: EnergyReport, source: str) -> None:
    """Put the report into the model card (README.md) of a saved model folder, replacing an older one."""
    from pathlib import Path

    from ._io import atomic_path

    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if CARD_SECTION in text:
        head, _, rest = text.partition(CARD_SECTION)
        following = rest.find("\n## ")
        text = head + (rest[following + 1:] if following >= 0 else "")
    section = (f"{CARD_SECTION}\n\nMeasured with `eventlm energy` on {source}: E = {E_MAC_PJ} pJ × MACs + "
               f"{E_AC_PJ} pJ × SOPs (45 nm), SOPs = input firing rate × MACs, per sample.\n\n{report.table()}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(text.rstrip("\n") + ("\n\n" if text.strip() else "") + section, encoding="utf-8")


def main(argv=None) -> int:
    """`eventlm energy MODEL DATASET [--split test] [--max-samples 64] [--batch-size 8] [--no-card]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="eventlm energy", description="Per-layer firing rates, SOPs and MACs of a "
                                     "saved model on an event dataset, and its theoretical energy per sample.")
    parser.add_argument("model", help="model folder saved by save_pretrained (with its tokenizer_config.json)")
    parser.add_argument("dataset", help="Hub event dataset: repo id or local folder")
    parser.add_argument("--split", default=None, help="split to measure on (default: test, else validation, else train)")
    parser.add_argument("--max-samples", type=int, default=64, help="rows measured (default 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward pass (default 8)")
    parser.add_argument("--no-card", action="store_true", help="do not write the table into the model card")
    args = parser.parse_args(None if argv is None else list(argv))
    import datasets

    from .auto import load_pretrained
    from .tokenization_events import EventTokenizer

    model = load_pretrained(args.model)
    tokenizer = EventTokenizer.from_pretrained(args.model)
    splits = datasets.load_dataset(args.dataset)
    split = args.split or next((s for s in ("test", "validation", "train") if s in splits), None)
    if split not in splits:
        parser.error(f"the dataset has no split {split!r}; it has {sorted(splits)} (choose with --split)")
    report = dataset_energy(model, tokenizer, splits[split].with_format("numpy"), args.batch_size, args.max_samples)
    print(report.table())
    if not args.no_card:
        write_card_section(args.model, report, f"`{args.dataset}` ({split}, {report.samples} samples)")
        print(f"wrote the table into {args.model}/README.md")
    return 0
