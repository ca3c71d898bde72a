"""The Codebook screen's service on every tokenizer family: a TiTok folder (with the teacher's codes beside it),
the embedded teacher choice, and a ReVQ release folder (its dc_ae/ a tiny diffusers DC-AE), on a folder of six
images. Every count is checked against a direct count of the tokenizer's own ``encode_each`` ids on the same images."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from analysis import CodebookEmbedding, iter_image_batches
from tests.app_fixtures import save_tiny_teacher, save_tiny_titok
from workbench.io.workspace import Workspace
from workbench.services.analyses import AnalysisService, code_examples, dataset_sources, teacher_beside
from workbench.services.model_registry import TEACHER_CHOICE, ModelRegistry
from workbench.ui.components.analysis_plots import codebook_map, position_heatmap, usage_plot
from workbench.ui.pages.codebook import status_text, top_frame

IMAGES = 6
DATASET = "datasets/noise"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    from tests.core.test_revq import TINY, build, save_tiny_dcae, write_release

    root = tmp_path_factory.mktemp("cb-families")
    ws = Workspace.create(root / "workspace")
    folder = ws.root / DATASET
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(IMAGES):  # smooth blobs, so the encoders see pictures that differ
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64, 64), Image.BILINEAR).save(folder / f"img{i}.png")
    save_tiny_titok(ws.root / "checkpoints" / "titok")
    save_tiny_teacher(root / "teacher")
    release = write_release(ws.root / "revq", build(TINY, 0))
    save_tiny_dcae(release / "dc_ae", seed=11)  # in the release's file format, loaded by the registry as a user's
    return ws


@pytest.fixture(scope="module")
def service(workspace, tiny_model_dir, tmp_path_factory) -> AnalysisService:
    registry = ModelRegistry(workspace, tiny_model_dir, teacher=workspace.root.parent / "teacher",
                             default_generator=None, capacity=6)
    return AnalysisService(registry, workspace, umap_cache_dir=tmp_path_factory.mktemp("umap"))


def direct_ids(service: AnalysisService, tokenizer, size: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ids of every image of the dataset, encoded here in one batch (what the screen's counts must equal)."""
    sources = dataset_sources(service.workspace, DATASET, "val")
    batch = next(iter(iter_image_batches(list(sources), size, IMAGES, IMAGES)))
    return tokenizer.encode_each(batch.images).cpu().numpy(), batch.keys


def position_counts(ids: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.bincount(ids[:, p], minlength=size) for p in range(ids.shape[1])])


def test_titok_usage_with_the_teachers_codes_beside(service):
    _, report = service.codebook("checkpoints/titok", DATASET, "val", 100)
    assert report.family == "titok" and list(report.books) == ["tokens", "teacher"] and report.teacher_note == ""
    tokens, teacher = report.book("tokens"), report.book("teacher")
    assert tokens.title == "TiTok codebook (32 latent tokens)" and tokens.grid_side is None
    assert tokens.stats.num_samples == IMAGES and tokens.stats.num_tokens == IMAGES * 32
    tok = service.registry.tokenizer("checkpoints/titok").tokenizer
    ids, keys = direct_ids(service, tok, 64)
    assert tokens.stats.position_counts.tolist() == position_counts(ids, 4096).tolist()
    assert tokens.vectors.shape == (4096, 8) and np.array_equal(tokens.map_counts, tokens.stats.counts)
    # the teacher's own codes on the same images: 16 x 16 cells, one code per image at each
    proxy, _ = direct_ids(service, teacher_beside(service.registry, tok)[0], 64)
    assert teacher.stats.position_counts.tolist() == position_counts(proxy, 256).tolist()
    assert teacher.grid_side == 16 and teacher.stats.num_tokens == IMAGES * 256
    # an example of the most used code is an image whose ids hold that code at the captioned token
    code = tokens.stats.most_used[0][0]
    for example in code_examples(report, "tokens", code, limit=3):
        assert example.caption == f"token {example.position} · {example.key}"
        assert ids[keys.index(example.key), example.position] == code
    assert "The teacher's codebook is its usage on the same images" in status_text(report)


def test_the_teacher_choice_is_one_grid_book(service):
    _, report = service.codebook(TEACHER_CHOICE, DATASET, "val", 4)
    assert list(report.books) == ["tokens"] and report.family == "maskgit_vqgan"
    book = report.book("tokens")
    assert book.title == "MaskGIT-VQGAN teacher codebook (16 x 16 grid codes)" and book.grid_side == 16
    assert book.stats.num_samples == 4 and book.stats.num_tokens == 4 * 256
    assert book.stats.position_counts.sum(axis=1).tolist() == [4] * 256
    ids, _ = direct_ids(service, service.registry.tokenizer(TEACHER_CHOICE).tokenizer, 64)
    assert book.stats.position_counts.tolist() == position_counts(ids[:4], 256).tolist()
    with pytest.raises(ValueError, match="no 'teacher' numbers in this run: the MaskGIT-VQGAN teacher is the teacher"):
        report.book("teacher")
    example = code_examples(report, "tokens", book.stats.most_used[0][0], limit=1)[0]
    row, col = divmod(example.position, 16)
    assert example.caption.startswith(f"cell ({row}, {col}) · ")
    assert "This is the teacher itself: its 16 x 16 grid codes" in status_text(report)


def test_revq_counts_position_codes_and_maps_position_0(service):
    _, report = service.codebook("revq", DATASET, "val", 100)
    book = report.book("tokens")
    stats = book.stats
    assert report.family == "revq" and list(report.books) == ["tokens"]
    assert book.title == "ReVQ codebooks (one per token position: 256 x 64 position-codes)"
    assert stats.per_position and stats.codebook_size == 256 * 64 and stats.codes_per_position == 64
    tok = service.registry.tokenizer("revq").tokenizer
    ids, keys = direct_ids(service, tok, 256)
    expected = position_counts(ids, 64)
    assert stats.position_counts.tolist() == expected.tolist() and stats.num_tokens == IMAGES * 256
    assert stats.counts.tolist() == expected.ravel().tolist()  # code = position * 64 + id
    assert stats.used_codes == int((expected > 0).sum()) and stats.utilisation == stats.used_codes / (256 * 64)
    # the map: position 0's own codebook, coloured by position 0's counts
    assert np.array_equal(book.vectors, tok.codebook()[0].detach().numpy()) and book.map_counts.tolist() == expected[0].tolist()
    embedding = CodebookEmbedding(book.vectors[:, :2].copy(), "x", {}, False, 0.0)
    figure = codebook_map(embedding, book).plot
    plot = json.loads(figure)
    assert "UMAP of position 0's 64 codewords" in plot["layout"]["title"]["text"]
    assert [c[1] for c in plot["data"][0]["customdata"]] == expected[0].tolist()
    # examples and the most-used table name (position, id); a code past position 0 too
    code = next(c for c, _ in stats.most_used if c >= 64)
    position, local = divmod(code, 64)
    found = code_examples(report, "tokens", code, limit=12)
    assert len(found) == min(12, int(expected[position, local]))
    for example in found:
        assert example.position == position and example.caption == f"token {position}, id {local} · {example.key}"
        assert ids[keys.index(example.key), position] == local
    top = top_frame(book)
    assert list(top.columns) == ["code", "token", "id", "count", "share"]
    assert (top["code"] == top["token"] * 64 + top["id"]).all() and top["count"].iloc[0] == expected.max()
    heat = json.loads(position_heatmap(book).plot)["data"][0]
    assert np.asarray(heat["z"]).shape == (256, 48)
    assert np.allclose(np.asarray(heat["z"])[:, 0], np.log10(1 + expected.max(axis=1)))  # rank 1 of each position
    usage = json.loads(usage_plot(book).plot)
    assert "position-codes used" in usage["layout"]["title"]["text"]
    text = status_text(report)
    assert f"{stats.used_codes} / 16384 position-codes used (256 positions x 64 ids" in text
    assert "numbered position x 64 + id" in text and "does not decode through the teacher's codes" in text
    with pytest.raises(ValueError, match=r"code: must be in 0\.\.16383"):
        code_examples(report, "tokens", 16384)

