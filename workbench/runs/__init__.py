"""Run tracking: the DuckDB metrics store, the job manager and what it needs to start and watch runs.

``store`` (one DuckDB file fed from the runs' JSONL files, with ``ingest`` and ``curves``), ``manager``
(queue, start, cancel, resume, sweep; ``jobs_cli`` on the command line), ``executors`` (where runs execute:
``local`` processes or ``slurm`` jobs), ``commands`` (the launcher's command line), ``runner`` + ``procs`` +
``rundir`` (a run as an OS process and a folder), ``records`` (the record types all of them share),
``sweeps`` and ``eta``.
"""
