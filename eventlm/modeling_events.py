"""What every event model shares (the event-model contract); a backbone supplies the rest.

Head constants are defined here once and read by the full forward, both streaming steps and generation.
"""

from __future__ import annotations

# The next-event head's log-normal gap scales log σ are clipped to this range in every path that computes
# them (full forward, training loss, streaming, generation): one distribution, trained and sampled.
GAP_LOG_SCALE_RANGE = (-12.0, 5.0)
