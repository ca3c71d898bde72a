"""Multi-step decoding behaviour (reference section 3): schedule, commitment rules, seeding, previews."""
from __future__ import annotations

import pytest
import torch

from core import SFTok
from core.config import TeacherConfig


def decode(model: SFTok, ids: torch.Tensor, steps: int = 8, temperature: float = 1.0, seed: int = 0, **kw):
    return model.decode_steps(ids, steps, temperature, torch.Generator().manual_seed(seed), **kw)


def test_eight_step_schedule_matches_official_counts(tiny_model, tiny_ids):
    records = decode(tiny_model, tiny_ids)
    mask_id = tiny_model.config.mask_id
    fed = [int((r.ids_in == mask_id).sum(dim=1)[0]) for r in records]
    assert fed == [256, 235, 214, 193, 170, 145, 117, 82]
    for r in records:  # every row has the same count
        assert torch.equal((r.ids_in == mask_id).sum(dim=1), torch.full((2,), fed[r.step]))
    assert [round(r.temperature, 6) for r in records] == [0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]
    assert records[3].target_mask_ratio == pytest.approx(2 / 3)
    assert [r.mask_ratio_in for r in records][:2] == [1.0, 235 / 256]


def test_commitment_rules(tiny_model, tiny_ids):
    mask_id = tiny_model.config.mask_id
    records = decode(tiny_model, tiny_ids, seed=3)
    for earlier, later in zip(records, records[1:]):
        assert torch.equal(earlier.ids_out, later.ids_in)
    for r in records:
        was_committed = r.ids_in != mask_id
        assert torch.equal(r.ids_out[was_committed], r.ids_in[was_committed])  # never changes later
        assert (r.newly_committed.sum(dim=1) >= 1).all()  # each step commits at least one slot
        assert torch.equal(r.newly_committed, (r.ids_in == mask_id) & (r.ids_out != mask_id))
        assert torch.equal(r.candidates[was_committed], r.ids_in[was_committed])
    final = records[-1].ids_out
    assert not (final == mask_id).any()  # nothing masked after the last step
    assert int(final.min()) >= 0 and int(final.max()) < tiny_model.config.proxy_vocab_size


def test_record_fields_are_consistent(tiny_model, tiny_ids):
    r = decode(tiny_model, tiny_ids)[2]
    assert r.logits.shape == (2, 256, 256)
    probs = torch.softmax(r.logits, dim=-1)
    assert torch.allclose(r.confidence, probs.gather(-1, r.candidates[..., None])[..., 0], atol=1e-6)
    entropy_bits = -(probs * probs.clamp_min(1e-30).log2()).sum(-1)
    assert torch.allclose(r.entropy, entropy_bits, atol=1e-4)
    assert (r.entropy >= 0).all() and (r.entropy <= 8 + 1e-4).all()  # log2(256) bits at most


def test_same_seed_same_ids_and_temperature_zero_is_deterministic(tiny_model, tiny_ids):
    a = decode(tiny_model, tiny_ids, seed=5)[-1].ids_out
    b = decode(tiny_model, tiny_ids, seed=5)[-1].ids_out
    c = decode(tiny_model, tiny_ids, seed=6)[-1].ids_out
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # the seed matters at temperature 1
    cold = [decode(tiny_model, tiny_ids, temperature=0.0, seed=s)[-1].ids_out for s in (1, 2)]
    assert torch.equal(cold[0], cold[1])


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 13, 32])
def test_any_step_count_works(tiny_model, tiny_ids, steps):
    mask_id = tiny_model.config.mask_id
    records = decode(tiny_model, tiny_ids[:1], steps=steps, seed=steps)
    assert len(records) == steps
    fed = [int((r.ids_in == mask_id).sum()) for r in records]
    assert fed[0] == 256 and all(a > b for a, b in zip(fed, fed[1:]))  # strictly decreasing
    assert not (records[-1].ids_out == mask_id).any()
    if steps == 1:  # one all-masked pass with argmax = the stage-1 single-step reconstruction
        assert torch.equal(records[0].ids_out, records[0].logits.argmax(-1))


def test_decode_ids_is_the_fast_path_of_decode_steps(tiny_model, tiny_ids):
    records = decode(tiny_model, tiny_ids, steps=8, seed=9)
    ids, logits = tiny_model.decode_ids(tiny_ids, 8, 1.0, torch.Generator().manual_seed(9))
    assert torch.equal(ids, records[-1].ids_out)
    assert torch.allclose(logits, records[-1].logits, atol=1e-5)
    hard_ids, none = tiny_model.decode_ids(tiny_ids, 8, 1.0, torch.Generator().manual_seed(9), last_logits=False)
    assert none is None and torch.equal(hard_ids, ids)


def test_decode_tokens_equals_last_record_preview(tiny_model, tiny_ids):
    records = decode(tiny_model, tiny_ids, seed=4, previews=[-1])
    images = tiny_model.decode_tokens(tiny_ids, 8, 1.0, torch.Generator().manual_seed(4))
    assert images.shape == (2, 3, 64, 64)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.allclose(images, records[-1].preview, atol=1e-5)
    assert all(r.preview is None for r in records[:-1])


def test_previews_consume_no_random_numbers(tiny_model, tiny_ids):
    gen_plain, gen_preview = torch.Generator().manual_seed(21), torch.Generator().manual_seed(21)
    plain = tiny_model.decode_steps(tiny_ids, 8, 1.0, gen_plain)
    shown = tiny_model.decode_steps(tiny_ids, 8, 1.0, gen_preview, previews=True)
    for a, b in zip(plain, shown):
        assert torch.equal(a.ids_out, b.ids_out)
    assert torch.equal(gen_plain.get_state(), gen_preview.get_state())
    assert all(r.preview.shape == (2, 3, 64, 64) for r in shown)
    # The step-0 preview is the single-step reconstruction: the soft render of an all-masked pass.
    single = tiny_model.decode_steps(tiny_ids, 1, 0.0, previews=True)[0].preview
    assert torch.allclose(shown[0].preview, single, atol=1e-5)


def test_decoding_builds_no_autograd_graph(tiny_model, tiny_ids):
    records = tiny_model.decode_steps(tiny_ids, 2, 1.0)
    assert not records[0].logits.requires_grad
    assert not tiny_model.decode_tokens(tiny_ids, 2, 1.0).requires_grad


def test_stage12_model_decodes_through_attached_teacher(tiny_ids):
    from core import MaskGITVQGAN, create_config
    from core.presets import TINY_TEACHER

    torch.manual_seed(0)
    model = SFTok(create_config("tiny", has_pixel_head=False)).eval()
    with pytest.raises(RuntimeError, match="attach_teacher"):
        model.decode_tokens(tiny_ids, 2)
    teacher = MaskGITVQGAN(TINY_TEACHER).eval()
    model.attach_teacher(teacher)
    images = model.decode_tokens(tiny_ids, 4, 1.0, torch.Generator().manual_seed(2))
    ids = model.decode_steps(tiny_ids, 4, 1.0, torch.Generator().manual_seed(2))[-1].ids_out
    assert torch.allclose(images, teacher.decode_codes(ids), atol=1e-6)


@pytest.mark.parametrize("guidance", [0.0, 4.5])
def test_generator_consumes_random_numbers_in_upstream_order(guidance):
    """Per step upstream draws: a (B,) class-dropout mask per forward (2 with guidance), the
    (B, N, K) candidate noise, then the (B, N) confidence noise, the last step included."""
    from core import GENERATOR_PRESETS, MaskGITGenerator

    torch.manual_seed(0)
    model = MaskGITGenerator(GENERATOR_PRESETS["tiny"]).eval()
    cfg = model.config
    classes = torch.tensor([1, 5])
    used = torch.Generator().manual_seed(3)
    ids, steps = model.generate(classes, num_steps=3, guidance_scale=guidance, generator=used)
    expected = torch.Generator().manual_seed(3)
    for _ in range(3):
        for _ in range(2 if guidance else 1):
            torch.rand(2, generator=expected)
        torch.rand(2, cfg.num_tokens, cfg.codebook_size, generator=expected)
        torch.rand(2, cfg.num_tokens, generator=expected)
    assert torch.equal(used.get_state(), expected.get_state())
    assert ids.shape == (2, cfg.num_tokens) and not (ids == cfg.mask_id).any()
    # floor(64 * acos(1/3) / (pi/2)) = floor(50.15), floor(64 * acos(2/3) / (pi/2)) = floor(34.27)
    assert [int((s.ids_out == cfg.mask_id).sum(1)[0]) for s in steps] == [50, 34, 0]


def test_per_sample_generators_draw_as_batches_of_one(tiny_model, tiny_ids):
    """One generator per sample: each sample's ids equal a batch of one with that generator, whoever shares its
    batch (gFID seeds sample i by i, so its image does not depend on batch size or process count)."""
    from core import GENERATOR_PRESETS, MaskGITGenerator

    torch.manual_seed(0)
    model = MaskGITGenerator(GENERATOR_PRESETS["tiny"]).eval()
    classes = torch.tensor([3, 0, 7])
    ids, _ = model.generate(classes, 4, 4.5, 1.0, [torch.Generator().manual_seed(10 + i) for i in range(3)])
    for i in range(3):
        alone, _ = model.generate(classes[i:i + 1], 4, 4.5, 1.0, torch.Generator().manual_seed(10 + i))
        assert torch.equal(alone[0], ids[i])
    swapped, _ = model.generate(classes.flip(0), 4, 4.5, 1.0, [torch.Generator().manual_seed(12 - i) for i in range(3)])
    assert torch.equal(swapped.flip(0), ids)
    with pytest.raises(ValueError, match="2 per-row generators for a batch of 3"):
        model.generate(classes, 2, 0.0, 1.0, [torch.Generator(), torch.Generator()])
    batch = tiny_ids[:2]  # the tokenizer's decoder draws through the same step
    proxy, _ = tiny_model.decode_ids(batch, 3, 1.0, [torch.Generator().manual_seed(5 + i) for i in range(2)])
    for i in range(2):
        alone, _ = tiny_model.decode_ids(batch[i:i + 1], 3, 1.0, torch.Generator().manual_seed(5 + i))
        assert torch.equal(alone[0], proxy[i])


# a pixel head whose top two levels share a width (as B/L: channel_mult 1, 1, ...): skip_levels=1 is allowed
WIDE_TOP_TEACHER = TeacherConfig(hidden_channels=16, channel_mult=(1, 1, 4), num_res_blocks=1, z_channels=32,
                                 codebook_size=256, num_groups=8)


def test_iter_decode_steps_yields_each_pass_as_it_runs_with_decode_steps_draws(tiny_model, tiny_ids):
    passes = []
    hook = tiny_model.decoder.register_forward_hook(lambda *_: passes.append(1))
    try:
        stream = tiny_model.iter_decode_steps(tiny_ids, 8, 1.0, torch.Generator().manual_seed(11))
        first = next(stream)
        assert len(passes) == 1 and first.step == 0  # step 1 exists before pass 2 runs
        streamed = [first, *stream]
    finally:
        hook.remove()
    listed = decode(tiny_model, tiny_ids, seed=11)
    assert len(streamed) == len(listed) == 8
    for a, b in zip(streamed, listed):
        for name in ("ids_in", "ids_out", "newly_committed", "candidates", "confidence", "entropy", "logits"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert (a.step, a.temperature, a.mask_ratio_in) == (b.step, b.temperature, b.mask_ratio_in)
        assert a.preview is None and not a.logits.requires_grad
    fast, _ = tiny_model.decode_ids(tiny_ids, 8, 1.0, torch.Generator().manual_seed(11))
    assert torch.equal(streamed[-1].ids_out, fast)


def test_skipping_pixel_decoder_levels_applies_the_output_layers_to_that_level():
    """skip_levels=1: the output layers read the features after level 1's blocks (half size), exactly."""
    import torch.nn.functional as F

    from core.maskgit_vqgan import VQGANDecoder

    torch.manual_seed(3)
    decoder = VQGANDecoder(WIDE_TOP_TEACHER).eval()
    z = torch.randn(2, WIDE_TOP_TEACHER.z_channels, 4, 4)
    seen = []
    hook = decoder.up[1].block[-1].register_forward_hook(lambda _m, _i, out: seen.append(out.clone()))
    with torch.no_grad():
        full = decoder(z)
        half = decoder(z, skip_levels=1)
        expected = decoder.conv_out(F.silu(decoder.norm_out(seen[0])))
    hook.remove()
    assert full.shape[-1] == 2 * half.shape[-1]
    assert torch.allclose(half, expected, atol=1e-5)
    assert torch.equal(decoder(z, skip_levels=0), full)
    with pytest.raises(ValueError, match="skip_levels"):
        decoder(z, skip_levels=len(decoder.up))


def test_skip_levels_refused_where_the_level_width_differs():
    from core.config import TeacherConfig
    from core.maskgit_vqgan import VQGANDecoder

    decoder = VQGANDecoder(TeacherConfig(hidden_channels=32, channel_mult=(1, 2), num_res_blocks=1, z_channels=8,
                                         codebook_size=16, num_groups=8))
    with pytest.raises(ValueError, match="64 channels, the output layers take 32"):
        decoder(torch.randn(1, 8, 2, 2), skip_levels=1)


def test_render_skip_levels_is_the_half_size_render(tiny_ids):
    """The pixel head with its top two levels of one width (as B/L's: 128, 128): half-size soft and hard renders."""
    from core import create_config

    torch.manual_seed(0)
    model = SFTok(create_config("tiny", teacher=WIDE_TOP_TEACHER.__dict__)).eval()
    records = decode(model, tiny_ids, steps=2, seed=1)
    with torch.no_grad():  # rendering is not a no_grad method; the decoders call it under no_grad
        half = model.render_soft(records[-1].logits, skip_levels=1)
        assert half.shape == (2, 3, 32, 32) and float(half.min()) >= 0.0 and float(half.max()) <= 1.0
        assert torch.equal(model.render_soft(records[-1].logits, skip_levels=0), model.render_soft(records[-1].logits))
        assert model.render_codes(records[-1].ids_out, skip_levels=1).shape == (2, 3, 32, 32)
        with pytest.raises(ValueError, match="skip_levels"):  # the tiny preset's top levels differ in width
            SFTok(create_config("tiny")).eval().render_soft(records[-1].logits, skip_levels=1)
