"""core.tokenizer's codebook view, per-image encoding and one-step proxy logits, on every family: the ids a
tokenizer gives index the vectors ``codebook()`` returns, so a usage table or a codebook map built on the interface
measures the same codes the model decodes from."""
from __future__ import annotations

import torch

from core import MaskGITVQGAN, create_config
from core.presets import TINY_TEACHER
from core.tokenizer import TeacherTokenizer, as_tokenizer
from tests.core.conftest import build_sftok
from tests.core.test_revq import TINY as REVQ_TINY
from tests.core.test_revq import build as build_revq
from tests.core.test_revq import tiny_dcae
from tests.core.test_titok import build as build_titok
from tests.core.test_titok import TINY as TITOK_TINY


def images(size: int, batch: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_sftok_ids_index_its_codebook_and_encode_each_is_batch_free():
    model = build_sftok(create_config("tiny"), seed=3)
    tok = as_tokenizer(model)
    x = images(model.config.image_size, 4, seed=5)
    each = tok.encode_each(x)
    alone = torch.cat([tok.encode(x[i:i + 1]) for i in range(4)])
    assert torch.equal(each, alone)  # an image's ids do not depend on the others in the call
    codes = tok.codebook()
    assert codes.shape == (model.config.codebook_size, model.config.token_size)
    z_q = model.quantize.get_codebook_entry(each)  # (B, C, 1, N)
    assert torch.allclose(codes[each], z_q[:, :, 0].transpose(1, 2), atol=1e-6)
    assert tok.predicts_teacher_codes and tok.proxy_logits(each) is None


def test_titok_codebook_ids_and_proxy_logits():
    model = build_titok(TITOK_TINY, 4)
    tok = as_tokenizer(model)
    x = images(64, 3, seed=6)
    ids = tok.encode(x)
    assert torch.equal(tok.encode_each(x), ids)
    codes = tok.codebook()
    z = model.encoder(x, model.latent_tokens)[:, :, 0].transpose(1, 2)  # (B, N, C) before quantising
    cosine = torch.nn.functional.normalize(z, dim=-1) @ codes.t()
    assert torch.equal(cosine.argmax(dim=-1), ids)  # nearest unit codeword = largest cosine
    logits = tok.proxy_logits(ids)
    assert logits.shape == (3, TITOK_TINY.num_proxy_codes, TITOK_TINY.teacher.codebook_size)
    assert torch.allclose(logits, model.proxy_logits(model.encode(x)[0]), atol=1e-5)  # straight-through z_q rounds
    assert tok.predicts_teacher_codes


def test_teacher_codes_are_its_embedding_rows():
    torch.manual_seed(0)
    teacher = MaskGITVQGAN(TINY_TEACHER).eval()
    tok = TeacherTokenizer(teacher, 64)
    x = images(64, 2, seed=7)
    ids = tok.encode(x)
    codes = tok.codebook()
    assert codes.shape == (TINY_TEACHER.codebook_size, TINY_TEACHER.z_channels)
    flat = teacher.encoder(x).permute(0, 2, 3, 1).reshape(2, -1, codes.shape[1])  # raster order, as the ids
    nearest = torch.cdist(flat.double(), codes.double().expand(2, -1, -1)).argmin(dim=-1)
    assert (nearest == ids).float().mean() > 0.99  # nearest codeword (fp32 ties aside)
    assert not tok.predicts_teacher_codes and tok.proxy_logits(ids) is None


def test_revq_has_one_codebook_per_position():
    model = build_revq(REVQ_TINY, 2)
    model.attach_autoencoder(tiny_dcae())
    tok = as_tokenizer(model)
    ids = tok.encode(images(256, 2, seed=8))
    codes = tok.codebook()
    assert codes.shape == (REVQ_TINY.tokens, REVQ_TINY.num_code, REVQ_TINY.code_dim)
    positions = torch.arange(REVQ_TINY.tokens)
    assert torch.equal(codes[positions, ids[0]], model.quantizer.lookup(ids)[0])
    assert not tok.predicts_teacher_codes
