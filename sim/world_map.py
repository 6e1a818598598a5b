"""PNG map of a generated world: land, roads, zones, homes and the subjects' true trails."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.patches import Circle

from sim.generate import Simulation
from sim.world import HOME, PROBATION, TOWN, VICTIM


def draw(sim: Simulation, path: Path, trails: int = 50) -> Path:
    w = sim.world
    fig, ax = plt.subplots(figsize=(14, 8), dpi=110)
    ax.set_facecolor("#cfe3f2")  # sea and harbour
    lx, ly = w.land.exterior.xy
    ax.fill(np.asarray(lx) / 1000, np.asarray(ly) / 1000, color="#f2efe6", zorder=0)
    segs = np.stack((w.nodes[w.edges[:, 0]], w.nodes[w.edges[:, 1]]), axis=1) / 1000
    ax.add_collection(LineCollection(list(segs), colors="#b9b2a3", linewidths=0.4, zorder=1))
    colours = {"exclusion": "#d62728", "victim": "#9467bd", "dead": "#7f7f7f"}
    for z in w.zones:
        ax.add_patch(
            Circle(
                (z.x / 1000, z.y / 1000),
                z.radius_m / 1000,
                fill=True,
                alpha=0.18,
                color=colours[z.kind],
                zorder=2,
            )
        )
    mv = sim.movements
    cmap = plt.get_cmap("tab20")
    for i in range(min(trails, mv.subjects)):
        _, x, y, _ = mv.track(i)
        ax.plot(x / 1000, y / 1000, lw=0.8, alpha=0.8, color=cmap(i % 20), zorder=3)
    homes = np.array([s.home for s in sim.subjects])
    hxy = w.place_xy[homes] / 1000
    ax.scatter(
        hxy[:, 0],
        hxy[:, 1],
        s=10,
        marker="s",
        c="#1f77b4",
        label="subject homes",
        zorder=4,
    )
    for kind, marker, colour, label in (
        (VICTIM, "*", "#9467bd", "victims' addresses"),
        (PROBATION, "P", "#2ca02c", "probation office"),
        (TOWN, ".", "#d62728", "town-centre spots"),
    ):
        xy = w.place_xy[w.place_kind == kind] / 1000
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=40 if kind != TOWN else 8,
            marker=marker,
            c=colour,
            label=label,
            zorder=5,
        )
    ax.plot([], [], color="#d62728", lw=6, alpha=0.3, label="exclusion zones")
    ax.plot([], [], color="#7f7f7f", lw=6, alpha=0.3, label="cellular dead zones")
    minx, miny, maxx, maxy = w.land.bounds
    ax.set_xlim(minx / 1000 - 0.5, maxx / 1000 + 0.5)
    ax.set_ylim(miny / 1000 - 0.5, maxy / 1000 + 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel(f"km east of {w.frame.lat0:.4f}, {w.frame.lon0:.4f}")
    ax.set_ylabel("km north")
    ax.set_title(
        f"{sim.scenario.name}: seed {sim.seed}, {sim.days} day(s), "
        f"{len(sim.subjects)} subjects ({len(w.place_kind[w.place_kind == HOME])} homes)"
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
