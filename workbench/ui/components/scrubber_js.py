"""The browser half of the step scrubber: switching steps, heat kinds and playing without a server call.

The scrubber's HTML carries every step's frames (``data-frames``, JSON); these handlers are attached
once to the component's element and delegate to whatever decode it currently shows, so a new decode
only replaces the HTML. While one decode streams in (same ``data-decode``, more steps each time), a step
the user picked with the slider meanwhile stays on screen, also when the last step arrives, instead of jumping
to the newest. The curve's step marker
is an overlay positioned from plotly's axes.
"""
from __future__ import annotations

PLAY_FRAME_MS = 350

ON_LOAD = """
const FRAME_MS = __FRAME_MS__;
const rootOf = () => element.querySelector('.scrub[data-frames]');
const dataOf = (root) => root._data || (root._data = JSON.parse(root.dataset.frames));
const markCurve = (root, step) => {
  const gd = document.querySelector('#' + root.dataset.scrubber + '-curve .js-plotly-plot');
  if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) return;
  if (!gd.dataset.scrubMarked && gd.on) {
    gd.dataset.scrubMarked = '1';
    gd.on('plotly_afterplot', () => { const r = rootOf(); if (r) markCurve(r, Number(r.dataset.step)); });
  }
  let line = gd.querySelector('.scrub-marker');
  if (!line) {
    line = document.createElement('div');
    line.className = 'scrub-marker';
    gd.style.position = 'relative';
    gd.appendChild(line);
  }
  const xa = gd._fullLayout.xaxis, size = gd._fullLayout._size;
  line.style.cssText = 'position:absolute;pointer-events:none;border-left:2px dotted #e8912d;' +
    `left:${size.l + xa.l2p(step)}px;top:${size.t}px;height:${size.h}px;width:0`;
};
const show = (root, step) => {
  const data = dataOf(root);
  step = Math.min(Math.max(1, Math.round(step)), data.steps);
  const i = step - 1, kind = root.dataset.heat in data.heat ? root.dataset.heat : 'confidence';
  root.dataset.step = String(step);
  root.querySelector('.scrub-grid').src = data.grid[i];
  root.querySelector('.scrub-heat').src = data.heat[kind][i];
  root.querySelector('.scrub-preview').src = data.preview[i];
  root.querySelector('.scrub-info').innerHTML = data.info[i];
  root.querySelector('.scrub-now').textContent = String(step);
  const [lo, hi, unit] = data.range[kind];
  root.querySelector('.scrub-scale-lo').textContent = lo.toFixed(lo % 1 ? 2 : 0);
  root.querySelector('.scrub-scale-hi').textContent = hi.toFixed(hi % 1 ? 2 : 0) + ' ' + unit;
  root.querySelector('.scrub-heat-kind').textContent = kind;
  const range = root.querySelector('.scrub-range');
  if (Number(range.value) !== step) range.value = String(step);
  markCurve(root, step);
};
const stop = (root) => {
  if (root && root._timer) { clearInterval(root._timer); root._timer = null; }
  const button = root && root.querySelector('.scrub-play');
  if (button) button.textContent = '▶ Play';
};
element.addEventListener('input', (ev) => {
  const root = rootOf();
  if (root && ev.target.classList.contains('scrub-range')) {
    stop(root);
    show(root, Number(ev.target.value));
    // a step picked while the decode streams in stays on screen as the remaining steps arrive
    element._pin = root.querySelector('.scrub-pending') ? {decode: root.dataset.decode, step: Number(root.dataset.step)} : null;
  }
});
element.addEventListener('click', (ev) => {
  const root = rootOf();
  if (!root || !ev.target.classList.contains('scrub-play')) return;
  if (root._timer) { stop(root); return; }
  const last = dataOf(root).steps;
  let step = 1;
  show(root, step);
  ev.target.textContent = '■ Stop';
  root._timer = setInterval(() => {
    step += 1;
    if (step > last) { stop(root); return; }
    show(root, step);
  }, FRAME_MS);
});
element.addEventListener('scrub-heat', (ev) => {
  const root = rootOf();
  if (root) { root.dataset.heat = ev.detail; show(root, Number(root.dataset.step)); }
});
watch('value', () => {
  const root = rootOf();
  if (!root) return;
  const pin = element._pin;
  if (pin && pin.decode && pin.decode === root.dataset.decode) show(root, pin.step);  // same decode, more steps
  else markCurve(root, Number(root.dataset.step));
  if (!root.querySelector('.scrub-pending')) element._pin = null;  // complete: later views start at the last step
});
""".replace("__FRAME_MS__", str(PLAY_FRAME_MS))


def heat_switch_js(name: str) -> str:
    """The heat-kind radio's handler: repaint the current step with the other heat map, in the browser."""
    return (f"(kind) => {{ const root = document.querySelector('#{name}-scrubber .scrub[data-frames]'); "
            "if (root) root.dispatchEvent(new CustomEvent('scrub-heat', {detail: kind, bubbles: true})); return []; }")
