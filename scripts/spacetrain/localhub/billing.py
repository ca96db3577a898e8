"""Space hardware flavors and a meter of billed seconds per flavor.

The Hub bills a Space while its container starts and runs; building, paused and
sleeping time is free. ``spaces.py`` tells the meter when a Space starts or stops
being billable; the meter only does arithmetic, with an injectable clock so tests
need no sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spacetrain.localhub.errors import BadRequest


@dataclass(frozen=True)
class Flavor:
    """One hardware flavor (huggingface_hub's ``SpaceHardware``, or ``JobHardware`` in
    ``jobs.JOB_FLAVORS``): what it is and costs.

    ``usd_per_hour`` is the public list price as we last read it (huggingface.co/pricing,
    docs/hub/spaces-gpus); treat it as an estimate, the meter's seconds are the fact.
    """

    name: str
    pretty: str
    cpu: str
    ram: str
    gpu: str | None = None  # accelerator model, e.g. "A10G"
    gpus: int = 0
    vram: str | None = None
    usd_per_hour: float = 0.0
    storage: str | None = None  # a Job's ephemeral storage (Spaces do not list one)

    def to_json(self) -> dict[str, Any]:
        """One row of ``list_jobs_hardware`` (the Hub's shape, priced per minute)."""
        per_minute = self.usd_per_hour / 60
        return {
            "name": self.name,
            "prettyName": self.pretty,
            "cpu": self.cpu,
            "ram": self.ram,
            **({"ephemeralStorage": self.storage} if self.storage else {}),
            "accelerator": (
                {
                    "type": "gpu",
                    "model": self.gpu,
                    "quantity": str(self.gpus),
                    "vram": self.vram or "",
                    "manufacturer": "Nvidia",
                }
                if self.gpu
                else None
            ),
            "unitCostMicroUSD": round(per_minute * 1_000_000),
            "unitCostUSD": round(per_minute, 6),
            "unitLabel": "minute",
        }


# huggingface_hub 2.4.0's SpaceHardware, in its order.
FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        Flavor("cpu-basic", "CPU basic", "2 vCPU", "16 GB"),
        Flavor("cpu-upgrade", "CPU upgrade", "8 vCPU", "32 GB", usd_per_hour=0.03),
        Flavor("zero-a10g", "ZeroGPU", "8 vCPU", "32 GB", "A10G", 1, "24 GB"),
        Flavor("t4-small", "Nvidia T4 - small", "4 vCPU", "15 GB", "T4", 1, "16 GB", 0.40),
        Flavor("t4-medium", "Nvidia T4 - medium", "8 vCPU", "30 GB", "T4", 1, "16 GB", 0.60),
        Flavor("l4x1", "1x Nvidia L4", "8 vCPU", "30 GB", "L4", 1, "24 GB", 0.80),
        Flavor("l4x4", "4x Nvidia L4", "48 vCPU", "186 GB", "L4", 4, "96 GB", 3.80),
        Flavor("l40sx1", "1x Nvidia L40S", "8 vCPU", "62 GB", "L40S", 1, "48 GB", 1.80),
        Flavor("l40sx4", "4x Nvidia L40S", "48 vCPU", "382 GB", "L40S", 4, "192 GB", 8.30),
        Flavor("l40sx8", "8x Nvidia L40S", "192 vCPU", "1534 GB", "L40S", 8, "384 GB", 23.50),
        Flavor("a10g-small", "Nvidia A10G - small", "4 vCPU", "15 GB", "A10G", 1, "24 GB", 1.00),
        Flavor("a10g-large", "Nvidia A10G - large", "12 vCPU", "46 GB", "A10G", 1, "24 GB", 1.50),
        Flavor(
            "a10g-largex2", "2x Nvidia A10G - large", "24 vCPU", "92 GB", "A10G", 2, "48 GB", 3.00
        ),
        Flavor(
            "a10g-largex4", "4x Nvidia A10G - large", "48 vCPU", "184 GB", "A10G", 4, "96 GB", 5.00
        ),
        Flavor("a100-large", "Nvidia A100 - large", "12 vCPU", "142 GB", "A100", 1, "80 GB", 2.50),
        Flavor("a100x4", "4x Nvidia A100", "48 vCPU", "568 GB", "A100", 4, "320 GB", 10.00),
        Flavor("a100x8", "8x Nvidia A100", "96 vCPU", "1136 GB", "A100", 8, "640 GB", 20.00),
        Flavor(
            "rtx-pro-6000", "Nvidia RTX PRO 6000", "16 vCPU", "96 GB", "RTX PRO 6000", 1, "96 GB"
        ),
        Flavor(
            "rtx-pro-6000x2",
            "2x Nvidia RTX PRO 6000",
            "32 vCPU",
            "192 GB",
            "RTX PRO 6000",
            2,
            "192 GB",
        ),
        Flavor(
            "rtx-pro-6000x4",
            "4x Nvidia RTX PRO 6000",
            "64 vCPU",
            "384 GB",
            "RTX PRO 6000",
            4,
            "384 GB",
        ),
        Flavor(
            "rtx-pro-6000x8",
            "8x Nvidia RTX PRO 6000",
            "128 vCPU",
            "768 GB",
            "RTX PRO 6000",
            8,
            "768 GB",
        ),
    )
}
DEFAULT_FLAVOR = "cpu-basic"


def check_flavor(flavor: Any) -> str:
    """A flavor the Hub knows (huggingface_hub's ``SpaceHardware``), else 400."""
    if flavor not in FLAVORS:
        raise BadRequest(f"Invalid hardware flavor {flavor!r}. Valid flavors: {', '.join(FLAVORS)}")
    return str(flavor)


FREE_SLEEP_SECONDS = 48 * 3600  # cpu-basic sleeps after 48 h; not configurable on the Hub


class BillingMeter:
    """Seconds billed per Space and flavor (at most one open segment per Space), and how
    often each Space was built or restarted: every restart of a GPU Space costs minutes.

    ``jobs.py`` keeps a second meter, one entry per Job, priced from its own table
    (``flavors``) and listed under ``group`` ("jobs") instead of "spaces".
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        flavors: dict[str, Flavor] | None = None,
        group: str = "spaces",
    ) -> None:
        self._clock = clock
        self._flavors = FLAVORS if flavors is None else flavors
        self.group = group
        self._lock = threading.Lock()
        self._done: dict[str, dict[str, float]] = {}
        self._open: dict[str, tuple[str, float]] = {}
        self._starts: dict[str, dict[str, int]] = {}

    def count_start(self, space_id: str, *, rebuild: bool) -> None:
        """The Space's app (re)starts: after a build (a commit, a factory reboot) or not."""
        with self._lock:
            starts = self._starts.setdefault(space_id, {"builds": 0, "restarts": 0})
            starts["builds" if rebuild else "restarts"] += 1

    def bill(self, space_id: str, flavor: str | None) -> None:
        """From now on ``space_id`` is billed at ``flavor`` (None: not billed)."""
        with self._lock:
            now = self._clock()
            current = self._open.get(space_id)
            if current is not None and current[0] == flavor:
                return
            if current is not None:
                spent = self._done.setdefault(space_id, {})
                spent[current[0]] = spent.get(current[0], 0.0) + now - current[1]
                del self._open[space_id]
            if flavor is not None:
                self._open[space_id] = (flavor, now)

    def billing(self, space_id: str) -> str | None:
        """The flavor ``space_id`` is being billed at now, if any."""
        with self._lock:
            current = self._open.get(space_id)
            return current[0] if current else None

    def snapshot(self, visible: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """``{group: {id: {"billing": flavor|None, "flavors": {flavor: {seconds, usd}},
        "builds": n, "restarts": n}}, "total": {"seconds", "usd"}}``.

        With ``visible`` (a user's look, not the admin's): only the entries it accepts,
        and no ``total``: the whole hub's bill is the admin's business.
        """
        data = self._snapshot()
        if visible is not None:
            data[self.group] = {k: v for k, v in data[self.group].items() if visible(k)}
            del data["total"]
        return data

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            spaces: dict[str, Any] = {}
            total_s = total_usd = 0.0
            for space_id in sorted(set(self._done) | set(self._open) | set(self._starts)):
                per = dict(self._done.get(space_id, {}))
                if space_id in self._open:
                    flavor, since = self._open[space_id]
                    per[flavor] = per.get(flavor, 0.0) + now - since
                flavors = {}
                for flavor, seconds in sorted(per.items()):
                    known = self._flavors.get(flavor)
                    rate = known.usd_per_hour if known is not None else 0.0
                    usd = seconds / 3600 * rate
                    flavors[flavor] = {"seconds": round(seconds, 3), "usd": round(usd, 6)}
                    total_s += seconds
                    total_usd += usd
                current = self._open.get(space_id)
                starts = self._starts.get(space_id, {"builds": 0, "restarts": 0})
                spaces[space_id] = {
                    "billing": current[0] if current else None,
                    "flavors": flavors,
                    **starts,
                }
            return {
                self.group: spaces,
                "total": {"seconds": round(total_s, 3), "usd": round(total_usd, 6)},
            }

    def reset(self) -> None:
        with self._lock:
            self._done.clear()
            self._open.clear()
            self._starts.clear()


def merge(*snapshots: dict[str, Any]) -> dict[str, Any]:
    """Several meters' snapshots as one: each meter's group, and one total."""
    out: dict[str, Any] = {}
    seconds = usd = 0.0
    for snap in snapshots:
        for key, value in snap.items():
            if key != "total":
                out[key] = value
        seconds += snap["total"]["seconds"]
        usd += snap["total"]["usd"]
    out["total"] = {"seconds": round(seconds, 3), "usd": round(usd, 6)}
    return out


__all__ = [
    "DEFAULT_FLAVOR",
    "FLAVORS",
    "FREE_SLEEP_SECONDS",
    "BillingMeter",
    "Flavor",
    "check_flavor",
    "merge",
]
