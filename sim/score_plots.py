"""The run's plots (matplotlib, Agg): a map of the stored trails and the zones with alerts
marked, and a per-subject timeline of truth episodes against alerts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle
from sqlalchemy import Engine, MetaData, Table, select

from sim import truth as tr
from sim.fleet import RunResult
from sim.score import Alert

COLOURS = {
    tr.CURFEW_BREACH: "tab:red",
    tr.EXCLUSION_ZONE_ENTRY: "tab:orange",
    tr.STRAP_CUT: "tab:purple",
    tr.CASE_OPEN: "tab:pink",
    tr.FOIL_SHIELDING: "tab:brown",
    tr.FLAT_BATTERY: "black",
    tr.NOT_CHARGED: "tab:gray",
    tr.HOME_UNIT_UNPLUGGED: "tab:olive",
    tr.CELLULAR_DEAD_ZONE: "tab:cyan",
    tr.CELLULAR_OUTAGE: "tab:blue",
}


def stored_trails(result: RunResult, engine: Engine) -> dict[int, np.ndarray]:
    """device -> (n, 3) array of (ts, x, y) in the world's frame, from the positions table."""
    pos = Table("positions", MetaData(), autoload_with=engine)
    out: dict[int, list[tuple[int, int, int]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(
            select(pos.c.device, pos.c.ts, pos.c.lat_e7, pos.c.lon_e7).order_by(
                pos.c.device, pos.c.ts
            )
        ):
            out.setdefault(r.device, []).append((r.ts, r.lat_e7, r.lon_e7))
    frame = result.sim.world.frame
    trails = {}
    for dev, rows in out.items():
        a = np.array(rows, dtype=np.float64)
        x, y = frame.to_xy(a[:, 1] / 1e7, a[:, 2] / 1e7)
        trails[dev] = np.column_stack((a[:, 0], x, y))
    return trails


def draw_map(
    result: RunResult, trails: dict[int, np.ndarray], alerts: Sequence[Alert], path: Path
) -> Path:
    sim = result.sim
    w = sim.world
    fig, ax = plt.subplots(figsize=(13, 8), dpi=100)
    lx, ly = w.land.exterior.xy
    ax.fill(lx, ly, color="#f3f1ea", zorder=0)
    for z in w.zones:
        colour = {"exclusion": "tab:red", "victim": "tab:purple", "dead": "tab:cyan"}[z.kind]
        ax.add_patch(Circle((z.x, z.y), z.radius_m, fill=False, ec=colour, lw=1.2, zorder=2))
    cmap = plt.get_cmap("tab20")
    by_tag = {s.tag_id: s.index for s in sim.subjects}
    for dev, tr_ in trails.items():
        i = by_tag.get(dev, 0)
        ax.plot(tr_[:, 1], tr_[:, 2], lw=0.7, color=cmap(i % 20), alpha=0.8, zorder=3)
    homes = w.place_xy[[s.home for s in sim.subjects]]
    ax.scatter(homes[:, 0], homes[:, 1], s=6, c="k", zorder=4, label="homes")
    for a in alerts:
        pts = trails.get(sim.subjects[a.subject].tag_id)
        if pts is None or not len(pts):
            x, y = homes[a.subject]
        else:
            k = int(np.clip(np.searchsorted(pts[:, 0], a.start_ms / 1000), 0, len(pts) - 1))
            x, y = pts[k, 1], pts[k, 2]
        ax.scatter([x], [y], marker="X", s=80, c=COLOURS.get(a.type, "k"), zorder=5)
    ax.set_aspect("equal")
    ax.set_title(
        f"{sim.scenario.name}, seed {sim.seed}: stored trails, zones (red exclusion, purple "
        "victim, cyan dead zone), alerts (X)"
    )
    ax.set_xlabel("m east of Bournemouth Square")
    ax.set_ylabel("m north")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_timeline(result: RunResult, alerts: Sequence[Alert], path: Path) -> Path:
    sim = result.sim
    n = len(sim.subjects)
    t0 = sim.start_ms
    hours = (sim.end_ms - t0) / 3_600_000
    fig, ax = plt.subplots(figsize=(13, max(3.0, 0.22 * n + 1.5)), dpi=100)
    for e in sim.truth.episodes:
        if e.subject < 0:
            ax.axvspan((e.start_ms - t0) / 3.6e6, (e.end_ms - t0) / 3.6e6, color="0.9", zorder=0)
            continue
        ax.barh(
            e.subject,
            max((e.end_ms - e.start_ms) / 3.6e6, 0.02),
            left=(e.start_ms - t0) / 3.6e6,
            height=0.6,
            color=COLOURS.get(e.type, "k"),
            alpha=0.7,
        )
    for a in alerts:
        ax.scatter([(a.raised_ms - t0) / 3.6e6], [a.subject], marker="v", c="k", s=25, zorder=3)
    for k, c in COLOURS.items():
        ax.barh(-10, 0, color=c, label=k)
    ax.set_ylim(-1, n)
    ax.set_xlim(0, hours)
    ax.invert_yaxis()
    ax.set_xlabel("hours since the start (local midnight)")
    ax.set_ylabel("subject")
    ax.set_title("truth episodes (bars) and alerts raised (triangles)")
    ax.legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
