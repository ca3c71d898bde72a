"""Data layer of the trainers: webdataset shards in the official layout, loaders, converters.

- :func:`make_train_loader` / :func:`make_eval_loader`: batches ``{"image", "class_id", "key"[, "proxy_codes"]}``;
  bad samples are skipped and counted in ``loader.stats`` (:class:`DataStats`).
- :func:`convert_folder` (CLI ``python -m trainers.data.convert``): image folder -> shards.
- :func:`build_default_dataset` (CLI ``python -m trainers.data.default_dataset``) and
  :func:`export_samples`: the embedded dataset cut from photos bundled with scikit-image/learn.
- :func:`cache_proxy_codes`: teacher codes stored next to each sample, for stages 1-2.
"""
from .convert import ConversionReport, convert_folder
from .default_dataset import DefaultDataset, build_default_dataset, export_samples
from .loaders import DataError, ShardLoader, make_eval_loader, make_train_loader
from .proxy_cache import ProxyCache, cache_proxy_codes
from .shards import expand_shards
from .stats import SKIP_REASONS, DataStats

__all__ = [
    "make_train_loader", "make_eval_loader", "ShardLoader", "DataStats", "DataError", "SKIP_REASONS",
    "expand_shards", "convert_folder", "ConversionReport", "build_default_dataset", "DefaultDataset",
    "export_samples", "cache_proxy_codes", "ProxyCache",
]
