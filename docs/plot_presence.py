"""Draw docs/presence-replay.png: score, baseline and decision over the real recording.

The recording the repository carries (tests/data/ruview-2node-120s.csi.jsonl.gz) is replayed
through the same NodeState and PresenceEngine the bridge runs, at default
settings, and each node's trace is drawn on a log scale.

    pip install matplotlib && python docs/plot_presence.py [RECORDING] [OUT.png]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bridge.nodes import codec  # noqa: E402
from bridge.nodes.nodestate import NodeState  # noqa: E402
from bridge.nodes.presence import PresenceEngine, PresenceSettings  # noqa: E402
from bridge.nodes.recording import recording_datagrams  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_RECORDING = HERE.parent / "tests" / "data" / "ruview-2node-120s.csi.jsonl.gz"


def trace(path: Path) -> dict[int, list[tuple[float, float, float | None, float | None, bool | None]]]:
    """Per node: (node time, raw score, smoothed, baseline, present) for every scored frame."""
    views: dict[int, NodeState] = {}
    rows: dict[int, list] = {}
    for datagram in recording_datagrams(path):
        try:
            frame = codec.decode(datagram.data)
        except codec.DecodeError:
            continue
        if frame.kind not in ("feature_state", "vitals", "fused_vitals"):
            continue
        view = views.get(frame.node_id) or views.setdefault(
            frame.node_id, NodeState(PresenceEngine(PresenceSettings())))
        view.add(frame, datagram.t)
        d = view.engine.decision(view.clock)
        rows.setdefault(frame.node_id, []).append(
            (view.clock, frame.presence_score, d.smoothed, d.baseline, d.present))
    return rows


def main() -> None:
    recording = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RECORDING
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "presence-replay.png"
    rows = trace(recording)
    settings = PresenceSettings()
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 3.2 * len(rows)), sharex=True, squeeze=False)
    for ax, (node_id, series) in zip(axes[:, 0], sorted(rows.items())):
        t0 = series[0][0]
        t = [r[0] - t0 for r in series]
        ax.scatter(t, [r[1] for r in series], s=6, color="0.6", label="presence_score (raw)")
        ax.plot(t, [r[2] for r in series], color="tab:blue", label=f"smoothed ({settings.window:g} s median)")
        base = [r[3] if r[3] is not None else math.nan for r in series]
        ax.plot(t, base, color="tab:green", label="baseline")
        ax.plot(t, [b * settings.enter_ratio for b in base], "--", color="tab:red", lw=0.8,
                label=f"enter (baseline x {settings.enter_ratio:g})")
        ax.plot(t, [b * settings.exit_ratio for b in base], ":", color="tab:orange", lw=0.8,
                label=f"exit (baseline x {settings.exit_ratio:g})")
        for i, r in enumerate(series):
            if r[4]:
                end = t[i + 1] if i + 1 < len(t) else t[i]
                ax.axvspan(t[i], end, color="tab:red", alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.set_ylabel("score")
        ax.set_title(f"node {node_id}: presence (shaded) at default settings; "
                     f"unknown for the first {settings.warmup:g} s while the baseline is learned",
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper right", ncol=3)
    axes[-1, 0].set_xlabel("node time (s) in the real 120 s recording")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
