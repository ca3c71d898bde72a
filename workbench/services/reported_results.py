"""Numbers the papers and official READMEs report, kept apart from anything this workbench measured.

They are ImageNet 256 x 256 numbers on the 50,000 validation images (rFID) or 50,000 class-balanced samples
against the ADM reference batch (gFID), at image sizes and with Inception code this machine does not run: the
Evaluate screen shows them as labelled reference rows, never in the measured rows or their plot.
"""
from __future__ import annotations

from dataclasses import dataclass

REFERENCE_PROTOCOL = "reported, ImageNet 256, 50k"


@dataclass(frozen=True)
class ReportedResult:
    model: str
    metric: str  # "rfid" or "gfid"
    value: float
    steps: int | None  # decoding steps of the reconstruction; None where the source does not tie it to one
    source: str


REPORTED: tuple[ReportedResult, ...] = (
    ReportedResult("SFTok-B", "rfid", 1.44, 8,
                   "SFTok paper (arXiv 2512.16910) Table 1 / project page: 64 tokens, 8192 codes, 8-step reconstruction"),
    ReportedResult("SFTok-L", "rfid", 1.21, 8,
                   "SFTok paper (arXiv 2512.16910) Table 1 / project page: 64 tokens, 8192 codes, 8-step reconstruction"),
    ReportedResult("TiTok-B-64", "rfid", 1.70, None, "TiTok official README (bytedance/1d-tokenizer), ImageNet 256"),
    ReportedResult("SFTok (generation)", "gfid", 2.29, None,
                   "SFTok paper abstract (arXiv 2512.16910); tokenizer size not stated, ADM evaluator, "
                   "VIRTUAL_imagenet256_labeled.npz"),
)
