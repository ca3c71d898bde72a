"""Launches acknowledged at once and validated in the background.

``JobManager.submit`` validates a config with the launcher's ``--dry-run`` (seconds to tens of
seconds on a busy CPU) before it queues the run. The Train screen must answer a click at once, so
it hands the submission to :class:`Launches`, shows the launch as "validating", and reads later
whether it became runs or was refused (with the launcher's reason).
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

log = logging.getLogger("workbench.launches")
VALIDATING, SUBMITTED, INVALID = "validating", "submitted", "invalid"


@dataclass
class Launch:
    """One click on Launch: what it asked for and what became of it."""

    id: str
    label: str  # e.g. "stage teacher" or "sweep of 4 points"
    stage: str
    device: str
    created: float = field(default_factory=time.time)
    state: str = VALIDATING
    error: str = ""
    run_ids: tuple[str, ...] = ()


class Launches:
    """Runs submissions one at a time on a worker thread (validations would fight for 2 cores anyway)."""

    def __init__(self, keep: int = 50, refused_shown_s: float = 600.0) -> None:
        self._items: dict[str, Launch] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="launch")
        self.keep = keep
        self.refused_shown_s = refused_shown_s  # a refused launch leaves the jobs table after this long

    def start(self, label: str, stage: str, device: str, submit: Callable[[], Sequence[str]],
              refused: tuple[type[BaseException], ...] = (ValueError,)) -> Launch:
        """Record a launch as validating and run ``submit`` (returns run ids) in the background;
        an exception in ``refused`` marks it invalid with its message, anything else too, logged as a fault."""
        launch = Launch(f"launch-{secrets.token_hex(3)}", label, stage, device)
        with self._lock:
            self._items[launch.id] = launch
            for old in sorted(self._items.values(), key=lambda x: x.created)[:-self.keep]:
                del self._items[old.id]
        self._pool.submit(self._run, launch, submit, refused)
        return launch

    def _run(self, launch: Launch, submit: Callable[[], Sequence[str]],
             refused: tuple[type[BaseException], ...]) -> None:
        try:
            run_ids = tuple(submit())
        except refused as err:
            log.warning("launch %s refused: %s", launch.id, err)
            self._update(launch, state=INVALID, error=str(err))
        except Exception as err:  # noqa: BLE001 -- a fault: logged with its traceback, shown to the user
            log.exception("launch %s failed", launch.id)
            self._update(launch, state=INVALID, error=f"could not launch: {err}")
        else:
            self._update(launch, state=SUBMITTED, run_ids=run_ids)

    def _update(self, launch: Launch, **changes: object) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(launch, name, value)

    def get(self, launch_id: str) -> Launch | None:
        with self._lock:
            return self._items.get(launch_id)

    def unsettled(self, now: float | None = None) -> list[Launch]:
        """Launches still validating, or refused in the last ``refused_shown_s`` (newest first): rows the jobs
        table shows above the runs. Older refusals drop out, so a table is not buried under past typos."""
        now = time.time() if now is None else now
        with self._lock:
            items = [x for x in self._items.values()
                     if x.state == VALIDATING or (x.state == INVALID and now - x.created < self.refused_shown_s)]
        return sorted(items, key=lambda x: x.created, reverse=True)

    def wait(self, launch_id: str, timeout: float = 120.0) -> Launch:
        """Block until a launch is settled (tests and scripts)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            launch = self.get(launch_id)
            if launch is None or launch.state != VALIDATING:
                return launch
            time.sleep(0.1)
        raise TimeoutError(f"{launch_id} still validating after {timeout} s")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
