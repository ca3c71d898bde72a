"""Analysis of SFTok models: per-step reconstruction quality, codebook usage and UMAP, and
information-theoretic measurements of multi-step decoding.

Core functions are pure (models and data in, frozen dataclasses out; seeds are arguments);
plotly figures live in :mod:`analysis.render`, the CLI in :mod:`analysis.cli`.
"""
from .umap_embedding import CodebookEmbedding, codebook_hash, codebook_umap
from .data import ImageBatch, iter_image_batches
from .estimators import (MIEstimate, PairwiseMI, entropy, entropy_from_counts, mutual_information,
                         mutual_information_test, neighbour_mutual_information, pairwise_mutual_information)
from .fid import FID_PROTOCOL, FeatureStats, build_inception, find_inception_weights, frechet_distance, to_uint8
from .image_metrics import psnr, rgb_to_y, ssim
from .metric_suite import MetricSuite, load_metric_suite
from .model_mi import (REVEAL_FRACTIONS, LeaveOneOutMI, information_rows, MIInputs, SelfForcingGap, TrajectoryInformation,
                       decode_trajectory, leave_one_out_mi, pick_positions, reveal_curve, self_forcing_gap,
                       sftok_mi_inputs, trajectory_information, with_teacher_logits)
from .code_information import CodeInformation, ScreenDefaults, code_information
from .reservoir import CodeReservoir
from .steps import QualityRow, StepQuality, evaluate_steps
from .usage import CodebookUsage, UsageStats, collect_tokenizer_usage, usage_from_counts

__all__ = [
    "CodebookEmbedding", "codebook_hash", "codebook_umap", "ImageBatch", "iter_image_batches", "MIEstimate",
    "PairwiseMI", "entropy", "entropy_from_counts", "mutual_information", "mutual_information_test",
    "neighbour_mutual_information", "pairwise_mutual_information", "FID_PROTOCOL", "FeatureStats", "build_inception",
    "find_inception_weights", "frechet_distance", "to_uint8", "psnr", "rgb_to_y", "ssim", "MetricSuite",
    "load_metric_suite", "LeaveOneOutMI", "MIInputs", "SelfForcingGap", "TrajectoryInformation", "decode_trajectory",
    "information_rows", "leave_one_out_mi", "pick_positions", "REVEAL_FRACTIONS", "reveal_curve", "self_forcing_gap", "CodeInformation", "ScreenDefaults",
    "code_information", "sftok_mi_inputs", "trajectory_information", "with_teacher_logits", "CodeReservoir",
    "QualityRow", "StepQuality", "evaluate_steps", "CodebookUsage", "UsageStats", "collect_tokenizer_usage", "usage_from_counts",
]
