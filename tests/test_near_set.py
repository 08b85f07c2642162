"""The near-distribution set: seeded, in easy-VQA's words, with right answers, readable by the model."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import easy_vqa
import numpy as np
import pytest
from PIL import Image

from tests.conftest import BUNDLED_MODEL
from vqa_engine.tools import near_set
from vqa_engine.tools.near_set import (
    ALL_KINDS,
    ANCHORS,
    Variation,
    build,
    clear_contrast,
    colour_family,
    draw,
    is_clear_shade,
    main,
    pictures,
    read_set,
    samples,
    shade,
    vary,
)


@pytest.fixture(scope="module")
def train_questions() -> set[str]:
    return set(easy_vqa.get_train_questions()[0])


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("near")
    build(folder, seed=7, count=48)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_seed_writes_the_same_bytes(small_set: Path, tmp_path: Path) -> None:
    build(tmp_path / "again", seed=7, count=48)
    assert _files(small_set) == _files(tmp_path / "again")
    build(tmp_path / "other", seed=8, count=48)
    other = _files(tmp_path / "other")
    assert other != _files(small_set)
    assert other["questions.tsv"] != _files(small_set)["questions.tsv"]


def test_questions_are_easy_vqa_templates_with_its_answers(
    small_set: Path, train_questions: set[str]
) -> None:
    rows = read_set(small_set)
    answers = set(easy_vqa.get_answers())
    assert {r.question for r in rows} <= train_questions
    assert {r.answer for r in rows} <= answers
    per_picture = Counter(r.file for r in rows)
    assert len(per_picture) == 48
    assert set(per_picture.values()) <= {2, 3, 4}
    assert all(r.file.is_file() for r in rows)
    assert {k for r in rows for k in r.kinds} == set(ALL_KINDS)


def test_yes_and_no_are_balanced() -> None:
    answers = Counter(a for _, qa in samples(3, 300) for _, a in qa if a in ("yes", "no"))
    assert abs(answers["yes"] - answers["no"]) <= 0.1 * sum(answers.values())


def _expected(question: str, params: Variation) -> str:
    """An answer worked out from the question's words alone, independently of ``near_set.ask``."""
    words = set(re.findall(r"[a-z]+", question))
    if question.startswith("what shape") or re.fullmatch(r"what is the \w+ shape\?", question):
        return params.shape
    if "color" in words:
        return params.colour
    named = words & (set(near_set.SHAPE_NAMES) | set(ANCHORS))
    assert len(named) == 1, question
    present = named == {params.shape} or named == {params.colour}
    negative = "not" in words or question.startswith("is no ")
    return "yes" if present != negative else "no"


def test_answers_match_what_was_drawn() -> None:
    checked = 0
    for picture in pictures(11, 60):
        params = picture.params
        for question, answer in picture.questions:
            assert answer == _expected(question, params), (question, params.summary())
        # the colour word is the family of the pixels at the shape's centre, as the file has them
        cx, cy = (round(v) for v in params.centre)
        patch = np.asarray(picture.image)[max(cy - 1, 0) : cy + 2, max(cx - 1, 0) : cx + 2]
        assert colour_family(np.median(patch.reshape(-1, 3), axis=0)) == params.colour, params.summary()
        checked += 1
    assert checked == 60


def test_a_known_picture_is_drawn_as_asked() -> None:
    params = Variation(
        shape="rectangle",
        colour="teal",
        rgb=(0, 140, 120),
        background=(255, 255, 255),
        canvas=(100, 80),
        outline=((20, 10), (70, 10), (70, 50), (20, 50)),
        antialias=False,
    )
    image = np.asarray(draw(np.random.default_rng(0), params))
    assert image.shape == (80, 100, 3)
    inside = (image == (0, 140, 120)).all(axis=2)
    assert inside[10:50, 20:70].all()
    assert inside.sum() == 41 * 51  # Pillow fills both edges, as a person's draw.rectangle does
    assert (image[~inside] == 255).all()
    assert params.centre == pytest.approx((45, 30))
    assert colour_family(params.rgb) == "teal"
    smooth = np.asarray(draw(np.random.default_rng(0), Variation(**{**params.__dict__, "antialias": True})))
    assert (smooth[30, 45] == (0, 140, 120)).all()


def test_shades_are_unambiguous_and_stand_out() -> None:
    rng = np.random.default_rng(0)
    for family in ANCHORS:
        for _ in range(200):
            rgb = shade(rng, family)
            assert is_clear_shade(rgb, family) and colour_family(rgb) == family, (family, rgb)
    assert colour_family((220, 30, 30)) == "red"
    assert colour_family((0, 140, 120)) == "teal"
    assert colour_family((140, 80, 30)) == "brown"
    assert {colour_family((v, v, v)) for v in range(100, 181, 10)} == {"gray"}
    for _ in range(300):
        params = vary(rng, ["colour_shade", "pastel_background", "size", "rotation", "large_canvas"])
        assert clear_contrast(params.rgb, params.background, params.colour)


def test_canvases_and_shapes_stay_in_range() -> None:
    rng = np.random.default_rng(1)
    for _ in range(400):
        kinds = [str(k) for k in rng.choice(ALL_KINDS, size=3, replace=False) if k != "pastel_background"]
        params = vary(rng, kinds)
        w, h = params.canvas
        assert min(w, h) >= 64 and max(w, h) <= 1024 and max(w, h) / min(w, h) <= 1.5
        points = np.array(params.outline)
        assert (points >= 0).all() and (points[:, 0] <= w).all() and (points[:, 1] <= h).all()
        assert np.ptp(points, axis=0).max() <= 0.8 * min(w, h) + 1e-6


def test_kinds_are_kept_apart(tmp_path: Path) -> None:
    counts = build(tmp_path, seed=1, count=6, kinds=["jpeg"])
    assert counts == {"jpeg": 6}
    assert sorted(p.suffix for p in (tmp_path / "images").iterdir()) == [".jpg"] * 6
    assert {r.kinds for r in read_set(tmp_path)} == {("jpeg",)}
    with pytest.raises(ValueError, match="unknown kinds"):
        build(tmp_path, seed=1, count=1, kinds=["sepia"])


def test_sizes_on_disk(small_set: Path) -> None:
    for path in (small_set / "images").iterdir():
        with Image.open(path) as image:
            assert min(image.size) >= 64 and max(image.size) <= 1024


def test_the_model_preprocessing_reads_them(small_set: Path) -> None:
    from vqa_engine.modular.package import load_package
    from vqa_engine.preprocess import load_image_tensor

    config = load_package(BUNDLED_MODEL, checks_data=False).config
    for path in sorted((small_set / "images").iterdir())[:12]:
        assert tuple(load_image_tensor(path.read_bytes(), config).shape) == (3, 64, 64)


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "set"), "--seed", "2", "--count", "5", "--kinds", "plain,blur"]) == 0
    out = capsys.readouterr().out
    assert "wrote 5 pictures" in out and "blur" in out
    assert len(list((tmp_path / "set" / "images").iterdir())) == 5
    for bad, message in ((["--count", "-1"], "--count"), (["--kinds", "sepia"], "sepia")):
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path / "bad"), *bad])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_scene_of_several_shapes_has_two_or_three_apart() -> None:
    """(For outlier exposure: the pictures no answer about *the* shape fits.)"""
    for i in range(20):
        first = np.asarray(near_set.several(np.random.default_rng([5, i])))
        again = np.asarray(near_set.several(np.random.default_rng([5, i])))
        assert np.array_equal(first, again)  # seeded
        background = first[0, 0].astype(int)
        ink = np.abs(first.astype(int) - background).sum(axis=2) > 60
        # count the separate blobs of ink (8-connected, a few pixels at least: an anti-aliased tip
        # may fade into specks): two or three shapes, never touching
        seen = np.zeros_like(ink)
        blobs = 0
        for y, x in zip(*np.nonzero(ink), strict=True):
            if seen[y, x]:
                continue
            size, stack = 0, [(y, x)]
            while stack:
                cy, cx = stack.pop()
                if 0 <= cy < ink.shape[0] and 0 <= cx < ink.shape[1] and ink[cy, cx] and not seen[cy, cx]:
                    seen[cy, cx] = True
                    size += 1
                    stack += [(cy + dy, cx + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            blobs += size >= 4
        assert blobs in (2, 3), (i, blobs)
