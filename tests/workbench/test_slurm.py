"""The Slurm executor against a real one-node Slurm started by the suite (``slurm_cluster``): a real tiny
teacher run and a sweep reach "done" with their metrics in the store, cancel goes through ``scancel``,
and a run Slurm kills at its time limit shows "timeout" and resumes from its checkpoint once requeued."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.trainers.shard_fixtures import write_shards
from tests.trainers.test_training import SMALL
from tests.workbench.helpers.fake_runs import make_manager, wait_until, write_config
from tests.workbench.helpers.fake_trainer import metric_keys, metric_value
from workbench.runs.executors.slurm_job import TrainingJob
from workbench.runs.executors.slurm_options import SlurmOptions, load_slurm_defaults
from workbench.runs.manager import JobManager
from workbench.runs.records import RunStatus
from workbench.runs.store import Store

OPTIONS = SlurmOptions(partition="debug", cpus_per_task=1, time_min=10)
FAST = {"poll_interval": 0.1, "slurm_poll_interval": 0.3}


def _assert_exact_rows(store: Store, run_id: str, max_steps: int, num_keys: int) -> None:
    frame = store.metrics_frame(run_id)
    keys = metric_keys(num_keys)
    assert len(frame) == max_steps * num_keys and not frame.duplicated(["step", "key"]).any()
    assert frame["value"].tolist() == [metric_value(s, keys.index(k)) for s, k in zip(frame["step"], frame["key"])]


def test_tiny_teacher_run_on_slurm_is_done_with_its_metrics_in_the_store(slurm_cluster, tmp_path):
    shards = write_shards(tmp_path / "shards", "train", 16, seed=0)
    manager = JobManager(tmp_path / "ws", **FAST)
    run = manager.submit("teacher", None, [*SMALL, f"data.train_shards={shards}", "max_steps=6"], slurm=OPTIONS)
    assert (run.status, run.executor, run.device) == (RunStatus.QUEUED, "slurm", "slurm:debug 1x1 CPU")
    wait_until(lambda: manager.store.get_run(run.id).job_id is not None, timeout=10)
    job_id = manager.store.get_run(run.id).job_id
    done = manager.wait(run.id, timeout=240)
    manager.close()
    assert (done.status, done.exit_code, done.job_id) == (RunStatus.DONE, 0, job_id), done.error
    assert slurm_cluster.job_field(job_id, "JobState") == "COMPLETED"
    run_dir = Path(done.run_dir)
    assert "done: step 6" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "exit.json").read_text())["exit_code"] == 0
    assert (run_dir / "slurm" / f"{job_id}_submission.sh").is_file()          # submitit's files stay in the run
    with Store(tmp_path / "ws") as store:
        losses = store.metrics_frame(run.id, ["train/loss"])
        assert losses["step"].tolist() == [5, 6]
        assert "eval/psnr" in store.keys([run.id])


def test_sweep_of_two_points_runs_as_two_slurm_jobs(slurm_cluster, tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=40, num_keys=3, step_sleep=0.01)
    manager = make_manager(tmp_path / "ws", **FAST)
    sweep = manager.submit_sweep("1", config, {"optim.lr": [1e-3, 3e-3]}, slurm=OPTIONS)
    runs = [manager.wait(run_id, timeout=90) for run_id in sweep.run_ids]
    manager.close()
    assert [r.status for r in runs] == [RunStatus.DONE] * 2
    assert len({r.job_id for r in runs}) == 2 and {r.sweep_id for r in runs} == {sweep.id}
    assert [r.config["optim"]["lr"] for r in runs] == [1e-3, 3e-3]
    with Store(tmp_path / "ws") as store:
        for run in runs:
            _assert_exact_rows(store, run.id, 40, 3)


def test_cancel_goes_through_scancel_and_resume_submits_a_new_job(slurm_cluster, tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=300, num_keys=2, step_sleep=0.02, checkpoint_every=25)
    manager = make_manager(tmp_path / "ws", **FAST)
    run = manager.submit("1", config, slurm=OPTIONS)
    wait_until(lambda: manager.store.metric_count(run.id) >= 2 * 30, timeout=60)
    assert manager.store.get_run(run.id).status == RunStatus.RUNNING
    first_job = manager.store.get_run(run.id).job_id
    assert manager.cancel(run.id).status == RunStatus.STOPPING
    stopped = manager.wait(run.id, timeout=60)
    assert (stopped.status, stopped.exit_code, stopped.error) == (RunStatus.STOPPED, 130, "cancelled")  # checkpointed
    assert slurm_cluster.job_field(first_job, "JobState") == "CANCELLED"
    last = manager.store.latest([run.id], ["train/step"])["step"].item()
    assert (Path(run.run_dir) / "checkpoints" / f"checkpoint-{last}" / "state.json").exists()

    manager.resume(run.id)
    done = manager.wait(run.id, timeout=90)
    manager.close()
    assert done.status == RunStatus.DONE and done.job_id != first_job
    assert f"starting at step {last + 1}" in (Path(run.run_dir) / "train.log").read_text()
    with Store(tmp_path / "ws") as store:
        _assert_exact_rows(store, run.id, 300, 2)


def test_time_limit_shows_timeout_and_a_requeue_resumes_from_the_checkpoint(slurm_cluster, tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=100_000, num_keys=2, step_sleep=0.02, checkpoint_every=20)
    manager = make_manager(tmp_path / "ws", **FAST)
    run = manager.submit("1", config, slurm=OPTIONS)
    wait_until(lambda: manager.store.metric_count(run.id) >= 2 * 40, timeout=60)
    job_id = manager.store.get_run(run.id).job_id
    slurm_cluster.scontrol("update", f"JobId={job_id}", "EndTime=now")   # its time limit passes now
    timed_out = manager.wait(run.id, timeout=60)             # Slurm checks limits every 30 s
    assert timed_out.status == RunStatus.TIMEOUT and "reached its time limit" in timed_out.error
    assert timed_out.exit_code == 130                         # SIGTERM from Slurm: the trainer checkpointed
    last = manager.store.latest([run.id], ["train/step"])["step"].item()

    slurm_cluster.scontrol("requeue", job_id)                 # as a preemption with requeue would
    wait_until(lambda: manager.store.get_run(run.id).status == RunStatus.RUNNING, timeout=40)
    log = Path(run.run_dir) / "train.log"
    wait_until(lambda: log.read_text().count("starting at step") == 2, timeout=30)
    assert f"starting at step {last + 1}" in log.read_text()  # --resume: from the newest checkpoint
    wait_until(lambda: manager.store.latest([run.id], ["train/step"])["step"].item() > last + 5, timeout=30)
    resumed = manager.store.get_run(run.id)
    assert (resumed.job_id, resumed.exit_code, resumed.ended_at) == (job_id, None, None)
    assert slurm_cluster.job_field(job_id, "Restarts") == "1"
    manager.cancel(run.id)
    assert manager.wait(run.id, timeout=60).status == RunStatus.STOPPED
    manager.close()
    with Store(tmp_path / "ws") as store:
        assert not store.metrics_frame(run.id).duplicated(["step", "key"]).any()   # resumed steps replaced


def test_a_requeue_after_the_end_is_noticed_by_a_manager_started_later(slurm_cluster, tmp_path):
    config = write_config(tmp_path / "c.yaml", max_steps=20, num_keys=2, step_sleep=0.01, checkpoint_every=10)
    first = make_manager(tmp_path / "ws", **FAST)
    run = first.submit("1", config, slurm=OPTIONS)
    done = first.wait(run.id, timeout=90)
    first.close()                                             # the manager that saw it end is gone
    assert done.status == RunStatus.DONE, done.error
    later = make_manager(tmp_path / "ws", **FAST)
    slurm_cluster.scontrol("requeue", done.job_id)
    log = Path(run.run_dir) / "train.log"
    wait_until(lambda: log.read_text().count("starting at step") == 2, timeout=40)
    assert "starting at step 21" in log.read_text()           # --resume: the newest checkpoint is the last step
    wait_until(lambda: (later.store.get_run(run.id).ended_at or 0) > done.ended_at, timeout=30)
    again = later.store.get_run(run.id)                       # the later manager saw it live and end again
    later.close()
    assert (again.status, again.exit_code, again.job_id) == (RunStatus.DONE, 0, done.job_id)
    assert again.started_at > done.ended_at and slurm_cluster.job_field(done.job_id, "Restarts") == "1"


def test_submitit_requeues_at_the_time_limit_warning_until_timeout_requeues_run_out(slurm_cluster, tmp_path):
    """``timeout_requeues=1``: the first time-limit warning (USR2, sent by hand as Slurm sends it
    ``signal_delay_s`` before the limit) checkpoints and requeues the job; the second ends it as "timeout"."""
    config = write_config(tmp_path / "c.yaml", max_steps=100_000, num_keys=2, step_sleep=0.02, checkpoint_every=20)
    manager = make_manager(tmp_path / "ws", **FAST)
    options = SlurmOptions(partition="debug", cpus_per_task=1, time_min=10, timeout_requeues=1)
    run = manager.submit("1", config, slurm=options)
    wait_until(lambda: manager.store.metric_count(run.id) >= 2 * 40, timeout=60)
    job_id = manager.store.get_run(run.id).job_id
    log = Path(run.run_dir) / "train.log"

    def warn() -> None:  # what Slurm sends at the warning; at 10 min submitit counts any warning as a time-out
        subprocess.run(["scancel", "--batch", "--signal=USR2", job_id], check=True, timeout=30)

    warn()
    wait_until(lambda: log.read_text().count("starting at step") == 2, timeout=60)
    last = int(log.read_text().split("starting at step ")[2].split()[0]) - 1
    assert last >= 40 and (Path(run.run_dir) / "checkpoints" / f"checkpoint-{last}").is_dir()
    wait_until(lambda: manager.store.get_run(run.id).status == RunStatus.RUNNING, timeout=30)
    assert manager.store.get_run(run.id).job_id == job_id     # submitit requeued the same job
    wait_until(lambda: manager.store.latest([run.id], ["train/step"])["step"].item() > last + 5, timeout=30)
    warn()                                                    # no requeue left: the run ends as a time-out
    ended = manager.wait(run.id, timeout=60)
    manager.close()
    assert ended.status == RunStatus.TIMEOUT and "stopped at its time-limit warning" in ended.error, ended.error
    assert ended.exit_code == 130                             # the trainer checkpointed both times
    with Store(tmp_path / "ws") as store:
        assert not store.metrics_frame(run.id).duplicated(["step", "key"]).any()


def test_slurm_defaults_come_from_the_workspace_yaml(tmp_path):
    assert load_slurm_defaults(tmp_path) == SlurmOptions()
    (tmp_path / "slurm.yaml").write_text("partition: gpu\nnodes: 2\ngpus_per_node: 4\nmem_gb: 64\naccount: lab\n"
                                         "extra_sbatch: ['--constraint=a100', '#SBATCH --exclusive']\n")
    options = load_slurm_defaults(tmp_path)
    assert options.describe() == "slurm:gpu 2x4 GPU"
    params = options.submitit_parameters("sftok-x")
    assert params["gpus_per_node"] == 4 and params["nodes"] == 2 and params["mem"] == "65536MB"
    assert params["additional_parameters"] == {"requeue": True, "constraint": "a100", "exclusive": True}
    (tmp_path / "slurm.yaml").write_text("partiton: gpu\n")
    with pytest.raises(ValueError, match="unknown Slurm option.*partiton"):
        load_slurm_defaults(tmp_path)


def test_several_gpus_or_nodes_start_the_launcher_through_torchrun(tmp_path):
    command = ["/venv/bin/python", "launch_training.py", "--stage", "1", "--run-dir", str(tmp_path)]
    job = TrainingJob(command, str(tmp_path), "/repo", {}, nodes=1, gpus_per_node=1)
    assert job.node_command("n1", "7") == command
    (tmp_path / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    assert job.node_command("n1", "7") == [*command, "--resume"]
    one_node = TrainingJob(command, str(tmp_path), "/repo", {}, nodes=1, gpus_per_node=4).node_command("n1", "7")
    assert one_node[:6] == ["/venv/bin/python", "-m", "torch.distributed.run", "--nproc_per_node=4", "--nnodes=1",
                            "--standalone"]
    assert one_node[6:] == [*command[1:], "--resume"]
    two_nodes = TrainingJob(command, str(tmp_path), "/repo", {}, nodes=2, gpus_per_node=8).node_command("n1", "7")
    assert two_nodes[3:8] == ["--nproc_per_node=8", "--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=n1:29400",
                              "--rdzv_id=7"]
