"""Where a run executes: "local" (a device of this machine) or "slurm" (a partition, with the Slurm
fields, pre-filled from ``WORKSPACE/slurm.yaml``). The fields show only when Slurm is chosen."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gradio as gr

from workbench.runs.executors.slurm_options import SlurmOptions, load_slurm_defaults

EXECUTORS = ("local", "slurm")


class ExecutorPicker:
    """``inputs`` go last in an event's inputs; ``split`` takes them back off the values. ``name`` prefixes the
    element ids (one picker per screen)."""

    def __init__(self, workspace: Path, name: str = "train") -> None:
        try:
            defaults, note = load_slurm_defaults(workspace), ""
        except ValueError as err:
            defaults, note = SlurmOptions(), f"slurm.yaml ignored: {err}"
        self.choice = gr.Radio(list(EXECUTORS), value="local", label="Executor", elem_id=f"{name}-executor")
        with gr.Group(visible=False) as self.slurm_group:
            with gr.Row():
                partition = gr.Textbox(defaults.partition, label="Partition", elem_id=f"{name}-slurm-partition")
                time_min = gr.Number(defaults.time_min, precision=0, minimum=1, label="Time (min)")
            with gr.Row():
                nodes = gr.Number(defaults.nodes, precision=0, minimum=1, label="Nodes")
                gpus = gr.Number(defaults.gpus_per_node, precision=0, minimum=0, label="GPUs / node")
                cpus = gr.Number(defaults.cpus_per_task, precision=0, minimum=1, label="CPUs / node")
                mem = gr.Number(defaults.mem_gb, minimum=0, label="Memory GB (0 = default)")
            with gr.Row():
                account = gr.Textbox(defaults.account, label="Account")
                qos = gr.Textbox(defaults.qos, label="QOS")
            extra = gr.Textbox("\n".join(defaults.extra_sbatch), lines=2, label="Extra sbatch lines",
                               placeholder="--constraint=a100", info=note or None)
        self.fields = {"partition": partition, "time_min": time_min, "nodes": nodes, "gpus_per_node": gpus,
                       "cpus_per_task": cpus, "mem_gb": mem, "account": account, "qos": qos, "extra_sbatch": extra}
        self.defaults = defaults
        self.inputs = [self.choice, *self.fields.values()]
        self.choice.change(lambda c: gr.Group(visible=c == "slurm"), self.choice, self.slurm_group, api_name=False,
                           show_progress="hidden")

    def split(self, values: Sequence[Any]) -> tuple[list[Any], SlurmOptions | None]:
        """(the other values, Slurm options or None for a local run) from an event's values."""
        rest, (choice, *fields) = list(values[:-len(self.inputs)]), values[-len(self.inputs):]
        if choice != "slurm":
            return rest, None
        chosen = {name: value for name, value in zip(self.fields, fields) if value not in (None, "")}
        return rest, SlurmOptions.from_mapping({**self.defaults.to_dict(), **chosen})
