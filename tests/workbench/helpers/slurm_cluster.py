"""A real one-node Slurm cluster on this machine for the Slurm executor tests: munged, slurmctld and
slurmd (Debian's packages) with every file in a temporary folder, short scheduling intervals, and no
accounting (states come from ``squeue``/``scontrol``). Started as root, stopped by PID.

``start_cluster`` returns the cluster, or raises ``ClusterUnavailable`` with the reason (missing
packages, not root, a daemon that would not come up), which the fixture turns into a skip.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "srun", "sinfo")
PARTITION = "debug"


class ClusterUnavailable(RuntimeError):
    """Slurm cannot run here; the message says why."""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    pid_files: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def scontrol(self, *args: str) -> str:
        done = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **self.env})
        if done.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def job_field(self, job_id: str, name: str) -> str:
        """One ``Key=Value`` field of ``scontrol show job`` (JobState, Restarts, ...)."""
        for item in self.scontrol("show", "job", "--oneliner", job_id).split():
            key, _, value = item.partition("=")
            if key == name:
                return value
        raise KeyError(name)

    def stop(self) -> None:
        for pid_file in reversed(self.pid_files):
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                continue
            deadline = time.time() + 10
            while time.time() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)


def start_cluster(root: Path) -> SlurmCluster:
    """Write the configuration under ``root`` and start the three daemons; wait for an idle node."""
    missing = [tool for tool in (*DAEMONS, *CLIENTS, "mungekey") if shutil.which(tool) is None]
    if missing:
        raise ClusterUnavailable(f"Slurm not installed ({', '.join(missing)} missing: run `make slurm`)")
    if os.geteuid() != 0:
        raise ClusterUnavailable("the test cluster's daemons must run as root")
    for sub in ("state", "spool", "log", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    _run(["mungekey", "--create", f"--keyfile={key}"])
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root))
    cluster = SlurmCluster(root, conf)
    env = {**os.environ, **cluster.env}
    socket_path = root / "munge" / "munge.socket"
    try:
        _run(["munged", "--force", f"--socket={socket_path}", f"--key-file={key}", f"--pid-file={root / 'munged.pid'}",
              f"--log-file={root / 'log' / 'munged.log'}", f"--seed-file={root / 'munge' / 'seed'}"])
        cluster.pid_files.append(root / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            _run([daemon], env=env)
            cluster.pid_files.append(root / f"{daemon}.pid")
        _wait_for_idle_node(env, root)
    except ClusterUnavailable:
        cluster.stop()
        raise
    return cluster


def slurm_conf(root: Path) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""ClusterName=workbench-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
SlurmdTimeout=30
MessageTimeout=5
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName={host} CPUs={os.cpu_count() or 2} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE OverSubscribe=FORCE:4 State=UP
"""


def _wait_for_idle_node(env: dict[str, str], root: Path, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        done = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, env=env, timeout=10)
        state = done.stdout.strip()
        if state in ("idle", "mix", "alloc"):
            return
        time.sleep(0.3)
    logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted((root / "log").glob("*.log")))
    raise ClusterUnavailable(f"the Slurm node did not come up (sinfo: {state!r}); daemon logs:\n{logs}")


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise ClusterUnavailable(f"{command[0]} failed to start (exit {done.returncode}): {done.stderr.strip()[-800:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
