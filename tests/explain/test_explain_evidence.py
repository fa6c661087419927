"""Evidence pictures: outline legibility, brightened night images, fixed colour scale, PNG encoding.

The fixtures are drawn at the panel's own size (192 px), so no resampling blurs them and every
number below can be checked by hand.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explain.evidence import (EVIDENCE_PX, brighten, colormap_lut, colour_bar, contrast_ratio, encode_png, erode,
                              evidence_panels, mean_luminance, needs_brightening, outline_contrast, relative_luminance)
from training.toyworld import render_sample

S = EVIDENCE_PX  # 192


def block_map(value: float) -> np.ndarray:
    """A `[1, 192, 192]` map: `value` on the square [48, 144)^2, 0 elsewhere."""
    m = np.zeros((1, S, S), np.float32)
    m[0, 48:144, 48:144] = value
    return m


def test_the_outline_on_a_plain_grey_image_hand_checked():
    image = np.full((S, S, 3), 119, np.uint8)  # luma 0.467: not dark; no spread: nothing to stretch
    # value 4 on a scale of 100 is below the colour floor (8 %), so the panel is the image plus the line
    ev = evidence_panels(image, block_map(4.0), 100.0, colormap_lut())
    assert not ev.brightened
    assert ev.regions[0].sum() == 96 * 96
    # white core: 1 px either side of the region's edge, 98^2 - 94^2; black casing: the next px, 100^2 - 92^2 - 768
    assert ev.core[0].sum() == 768 and ev.casing[0].sum() == 768
    panel = ev.panels[0]
    assert (panel[ev.core[0]] == 255).all() and (panel[ev.casing[0]] == 0).all()
    off = ~(ev.core[0] | ev.casing[0])
    assert (panel[off] == 119).all()
    # grey 119 has relative luminance 0.18447; white against it 1.05 / 0.23447 = 4.478,
    # black 0.23447 / 0.05 = 4.689: the better tone counts, on both sides of the line
    assert relative_luminance([119, 119, 119]) == pytest.approx(0.18447, abs=1e-5)
    c = outline_contrast(panel, ev.regions[0], ev.core[0], ev.casing[0])
    assert c["pixels"] == 768
    assert c["min"] == pytest.approx(4.689, abs=1e-3) and c["mean"] == pytest.approx(4.689, abs=1e-3)


@pytest.mark.parametrize("grey", range(0, 256, 17))
def test_the_outline_stands_out_on_any_grey(grey):
    # white + black: the worse of the two is best at luminance 0.179 (both 4.58), never below 3
    image = np.full((S, S, 3), grey, np.uint8)
    ev = evidence_panels(image, block_map(4.0), 100.0, colormap_lut())
    c = outline_contrast(ev.panels[0], ev.regions[0], ev.core[0], ev.casing[0])
    assert c["min"] >= 4.58 - 1e-3
    shown = ev.panels[0, 5, 5]  # the grey as shown (a dark one is brightened first)
    assert ev.brightened == (grey / 255 < 0.35) and (ev.panels[0][~(ev.core[0] | ev.casing[0])] == shown).all()
    lum = relative_luminance(shown)
    assert c["min"] == pytest.approx(float(max(contrast_ratio(1.0, lum), contrast_ratio(0.0, lum))), abs=1e-6)


def test_a_night_image_is_brightened_so_its_top_region_shows_hand_checked():
    image = np.full((S, S, 3), 20, np.uint8)  # night: luma 20/255 ...
    image[48:144, 48:144] = 60  # ... and a faint object, a quarter of the image, under the top region
    assert needs_brightening(image)  # mean luma 0.098 < 0.35
    # levels: 1st percentile (20) -> 0, 99th (60) -> 1; mean 0.25 then, and gamma leaves 0 and 1 alone
    assert set(np.unique(brighten(image)).tolist()) == {0, 255}
    ev = evidence_panels(image, block_map(4.0), 100.0, colormap_lut())
    assert ev.brightened
    inside = erode(ev.regions[0], 3)  # the region less the line
    # relative luminance of grey 60 is 0.0452; brightened the object is white, 1.0
    assert mean_luminance(image, inside) == pytest.approx(0.0452, abs=1e-4)
    assert mean_luminance(ev.panels[0], inside) == 1.0
    c = outline_contrast(ev.panels[0], ev.regions[0], ev.core[0], ev.casing[0])
    assert c["min"] == pytest.approx(21.0)  # black casing on the white object, white core on the black night


def test_toy_world_night_images_show_the_top_region_and_a_legible_outline():
    lut = colormap_lut()
    for index in range(6):
        img, _label, domain, parts, _meta = render_sample(index, domain="night", image_size=64)
        image = np.asarray(img)
        creature = (parts > 0).astype(np.float32).reshape(8, 8, 8, 8).mean(axis=(1, 3))  # an 8x8 map on the creature
        ev = evidence_panels(image, creature[None], float(creature.max()), lut)
        assert domain == "night" and ev.brightened
        region = ev.regions[0]
        shown = np.asarray(Image.fromarray(image).resize((S, S), Image.Resampling.BILINEAR))
        before, after = mean_luminance(shown, region), mean_luminance(ev.panels[0], region)
        assert before < 0.09 and after > 0.25 and after > 3 * before, (index, before, after)
        assert outline_contrast(ev.panels[0], region, ev.core[0], ev.casing[0])["min"] >= 3.0


def test_a_day_image_is_left_as_it_is():
    img, *_ = render_sample(0, domain="day", image_size=64)
    assert not needs_brightening(np.asarray(img))


def test_the_colour_scale_is_fixed_for_the_run():
    lut = colormap_lut()
    image = np.full((S, S, 3), 100, np.uint8)
    a = np.zeros((1, S, S), np.float32)
    b = np.zeros((1, S, S), np.float32)
    a[0, :96, 96:], a[0, 96:, :] = 1.0, 4.0  # own maximum 4: value 1 is outside its top region
    b[0, :96, 96:], b[0, 96:, :] = 1.0, 0.5  # own maximum 1: value 1 is its top region
    pa, pb = evidence_panels(image, a, 4.0, lut), evidence_panels(image, b, 4.0, lut)
    assert pb.regions[0, 40, 150] and not pa.regions[0, 40, 150]
    assert (pa.panels[0, 40, 150] == pb.panels[0, 40, 150]).all()  # the same value gets the same colour
    assert not (pa.panels[0, 40, 150] == pa.panels[0, 150, 40]).all()


def test_the_colour_bar_runs_from_the_scales_bottom_to_its_top():
    lut = colormap_lut()
    band = colour_bar(lut)
    row = band[8]  # through the middle of the gradient
    first = np.where((row == lut[0]).all(axis=1))[0][0]
    last = np.where((row == lut[255]).all(axis=1))[0][-1]
    assert last - first >= 100  # most of the panel's width
    assert (np.diff(relative_luminance(row[first:last + 1])) >= -1e-9).all()  # inferno brightens from weak to strong


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (64, 64, 3), (3, 200, 3)])
def test_png_encoding_round_trips(shape):
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert (np.asarray(Image.open(io.BytesIO(encode_png(a)))) == a).all()
