"""Findings of earlier experiments that the card states as measured then (dated in their text, not re-measured):
why the tiny preset, which recipe changes did not help, and what longer training and other choices did before."""

# the last bullets of "Reading the numbers"
SIZE_CHOICE = """\
- Why the tiny preset (measured 2026-12-01 on this 2-core machine, other runs sharing it): decode time does not
  forbid a larger model, the training budget does. Upload to all 8 steps with previews
  (`workbench.services.decoding.reconstruct_trace`, 64 px, 2 threads, best of 5): tiny 128 ms, a wider model
  (encoder 192 wide x 4, decoder 256 wide x 4; 5.8 M parameters against 1.5 M) 311 ms, both under the 1 s limit
  (the B preset takes about 4 s per 2 images, README). But the wider model trains 4x slower per step: given the same
  wall time (about 6 min of one core), its stage 1 reached a held-out PSNR@8 of 11.6 dB after 200 steps, the tiny
  preset 13.4 dB after 800 (`launch_training.py --stage 1 --config configs/default/stage1.yaml max_steps=200
  "model.encoder={width: 192, depth: 4, heads: 4}" "model.decoder={width: 256, depth: 4, heads: 8}"`, against
  `max_steps=800`). Nor does a wider part learn faster per step: after the same 800 steps a 2x wider, deeper encoder
  alone (192 x 4, 1.4x slower per step) reached PSNR@8 12.84 dB (training cross-entropy 4.56 nats), a wider decoder
  alone (256 x 4, 3x slower) 12.35 dB (4.73 nats), the tiny preset 13.38 dB (4.62 nats); single short runs, so these
  say "no faster early", not where longer runs would end. Within a budget of about two hours of 2 cores for the
  whole chain the tiny preset stays the better choice; a larger one needs a longer budget than this machine gives."""


RECIPE_PROBES = """\
- Recipe changes tried on 2026-12-01 that did not lift held-out quality (single runs on this data, from the same
  starting points as the shipped runs; `launch_training.py` with the overrides named):
  stage 1 at 3x the learning rate (`optim.lr=1.2e-3 optim.end_lr=1.2e-4 max_steps=800`): in-training held-out
  PSNR@8 13.19 dB against 13.38 at lr 4e-4 after the same 800 steps; nearest-codeword assignment instead of Sinkhorn
  (`model.quantizer_mode=nearest`, 800 steps): the codebook collapsed (14% of the codes used on held-out crops) and
  PSNR@8 fell to 9.67 dB; SFVR with teacher codes in part of the context (`sfvr.replace_prob=0.8`, the official YAML's
  default, and `0.5`; 1500 steps, seed 42): PSNR@8 15.08 and 15.10 dB against 15.15 at 1.0 (Y, 256 held-out crops),
  and still a flat reveal curve (6.63 / 6.64 / 6.72 and 6.63 / 6.63 / 6.72 bits/slot), no leave-one-out interval
  above zero: mixed with its own wrong guesses, a true code in the context is not worth reading; stage 3 at 3x and
  10x the learning rate (`optim.lr=3e-4` / `1e-3`, 800 steps): in-training PSNR@8 15.35 / 15.27 dB against 15.30.
  One change did help early: stage 1 with the decoder's mask row redrawn at N(0, 0.02) and the sine-cosine grid on the
  slot positions (`decoder_init.reset_mask_embedding=true decoder_init.sincos_slot_positions=true max_steps=800`; the
  mask row was drawn unseeded then) reached 13.86 dB after 800 steps, against 13.38 without and 13.25 with the grid
  alone; at PyTorch's N(0, 1) the mask row, which every stage-1 slot holds, is ~8 times longer than a slot's position,
  and a stage-1 decoder predicts nearly the same code distribution at every slot of an image (KL from the image's mean
  prediction 0.26 nats for the shipped stage 1). But over the recipe's full 5000 steps
  (the same overrides without `max_steps`) the gain was gone: in-training PSNR@8 14.09 dB against 14.13, on 256 held-out
  crops (Y) PSNR@1 14.90 / PSNR@8 15.03 against 14.84 / 14.79, tokens 0.73 bits/slot against 0.77, per-slot KL
  0.30 nats, and a thumbnail probe (as below, fit on 1024 crops) 16.05 dB from its tokens against 15.97.
  Which codes the tokens get barely matters to this decoder: on the shipped model (256 held-out crops) PSNR@8 is
  16.21 dB with each image's tokens assigned alone (Sinkhorn then agrees with the nearest codeword for 24% of the
  tokens), 16.28 with 16 images balanced together as in training (47%), and 16.21 with nearest codewords
  (agreement measured on the first 64 held-out crops)."""


# the paragraphs after them: earlier defaults and the weight initialisation
MORE_STEPS_FINDING = """\
History (earlier defaults, first dataset build of 15 photos, 2026-11-23): with 15 training photos, longer training
made held-out quality worse (stage 1's in-training held-out PSNR@8 fell from 13.27 dB at step 1000 to 12.68 at 3000
while its training cross-entropy kept falling), which is why the dataset was widened to every licensed photo
PyPI packages ship, with augmentation; with 19 photos the curves above no longer fall, they flatten. A stage 3 with a
PatchGAN term collapsed to drawing nearly the same image for every input (4.0% code accuracy, 22 distinct codes, at
PSNR values that hid it: a flat grey scores 12-15 dB here), so the GAN term stays off. The default shipped before
this one (stage 3 after 400 steps) had a negative information gain along the trajectory (about -4 bits/image at
step 5) on held-out crops at the Information screen's defaults. Until 2026-12-01 this card encoded the measured
crops together (Sinkhorn balances the tokens of all images in one call): measured that way the shipped stage 3 read
PSNR@8 16.10 dB and a trajectory gain positive at every step in 7 of 8 groups; with each image's tokens assigned alone,
as the workbench assigns an upload's, it is the table above (positive in 1 of 8). The number of images encoded
together had been changing the answer.

Initialisation: the official code initialises encoder and decoder weights and embedding tables N(0, 0.02); this
model was trained from PyTorch's defaults (the port lacked the official init until 2026-12-01; `configs/default/
stage1.yaml` keeps `weight_init: pytorch` so `make default-model` reproduces it). In an 800-step stage-1 test on this
data the official init reached a held-out PSNR@8 of 11.2 dB against 13.4 with PyTorch's defaults (one run each)."""
