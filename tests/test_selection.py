"""Selective prediction: the validation table, the choice for a target risk, risk–coverage and AURC,
and the checks taking their thresholds from a package's table (or from the settings when set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vqa_engine.checks.answer_checks import AnswerChecks
from vqa_engine.checks.familiarity import FamiliarityModel
from vqa_engine.checks.options import FALLBACK_MIN_CONFIDENCE, FALLBACK_MIN_FAMILIARITY, CheckOptions
from vqa_engine.checks.selection import Scored, SelectionTable, aurc, operating_point, risk_coverage
from vqa_engine.errors import ModelPackageError


def scored(familiarity: float, confidence: float, correct: bool, flagged: bool = False) -> Scored:
    return Scored(familiarity, confidence, flagged, correct)


# in-distribution: 96 right answers (confident, familiar), 4 wrong ones at low confidence;
# out of distribution: 20 unfamiliar pictures answered confidently
IN_DIST = [scored(0.5, 0.99, True)] * 96 + [scored(0.3, 0.55, False)] * 4
OOD = [scored(1e-8, 0.97, False)] * 19 + [scored(0.2, 0.9, False)]
# (the familiarity grid starts at 0.001: the floor under which no picture is answered)


def test_an_operating_point_counts_coverage_risk_and_flagged() -> None:
    everything = operating_point(IN_DIST, OOD, 0.0, 0.0)
    assert (everything.coverage, everything.risk, everything.ood_flagged) == (1.0, 0.04, 0.0)
    strict = operating_point(IN_DIST, OOD, 0.001, 0.6)
    assert (strict.coverage, strict.risk, strict.ood_flagged) == (0.96, 0.0, 0.95)


def test_the_choice_answers_the_most_within_the_risk_and_flags_the_ood_pictures() -> None:
    table = SelectionTable.measure(IN_DIST, OOD)
    chosen = table.choose(max_risk=0.01)
    assert chosen.risk <= 0.01 and chosen.ood_flagged >= 0.95
    assert chosen.coverage == 0.96
    # of the points that answer as much, the one that flags every OOD question (the last one only
    # by its confidence), with the lowest familiarity threshold that flags the unfamiliar ones
    assert (chosen.min_familiarity, chosen.min_confidence, chosen.ood_flagged) == (0.001, 0.95, 1.0)
    loose = table.choose(max_risk=0.05, min_ood_flagged=0.0)
    assert (loose.coverage, loose.min_familiarity, loose.min_confidence) == (1.0, 0.001, 0.0)


def test_when_no_point_fits_the_safest_is_chosen() -> None:
    hopeless = [scored(0.5, 0.99, False)] * 10  # every answer wrong, all confident
    chosen = SelectionTable.measure(hopeless, OOD).choose(max_risk=0.01)
    assert chosen.coverage == 0.0  # answering nothing is the only safe choice


def test_the_table_survives_a_round_trip_and_a_bad_file_names_itself(tmp_path: Path) -> None:
    table = SelectionTable.measure(IN_DIST, OOD, {"in_distribution": "test"})
    table.save(tmp_path / "checks_selection.json")
    again = SelectionTable.load(tmp_path / "checks_selection.json")
    assert again.points == table.points
    assert again.info["in_distribution"] == "test" and again.info["ood_questions"] == 20
    (tmp_path / "bad.json").write_text('{"format_version": 99, "points": []}')
    with pytest.raises(ModelPackageError, match=r"bad\.json"):
        SelectionTable.load(tmp_path / "bad.json")


def test_risk_coverage_and_aurc() -> None:
    # trust ranks: right, right, wrong, right (ties enter together)
    curve = risk_coverage([(0.9, True), (0.8, True), (0.5, False), (0.1, True)])
    assert curve == [(0.25, 0.0), (0.5, 0.0), (0.75, 1 / 3), (1.0, 0.25)]
    assert aurc(curve) == pytest.approx(0.25 * (1 / 3) + 0.25 * 0.25)
    assert risk_coverage([(0.5, True), (0.5, False)]) == [(1.0, 0.5)]
    perfect = risk_coverage([(0.9, True), (0.1, False)])
    assert aurc(perfect) == pytest.approx(0.25)  # the wrong one enters last


def test_the_checks_take_their_thresholds_from_the_table_unless_set(familiarity: FamiliarityModel) -> None:
    table = SelectionTable.measure(IN_DIST, OOD)

    def checks(options: CheckOptions, selection: SelectionTable | None = table) -> AnswerChecks:
        return AnswerChecks(
            options, vocabulary=["shape"], answers=["red"], familiarity=familiarity, selection=selection
        )

    chosen = checks(CheckOptions())
    assert (chosen.min_familiarity, chosen.min_confidence) == (0.001, 0.95)
    assert (
        "chosen for MAX_ANSWER_RISK=0.01: on validation 96.0% answered, 0.00% of them wrong"
        in chosen.describe()
    )
    overridden = checks(CheckOptions(min_confidence=0.3, min_image_familiarity=0.01))
    assert (overridden.min_familiarity, overridden.min_confidence) == (0.01, 0.3)
    without = checks(CheckOptions(), selection=None)
    assert (without.min_familiarity, without.min_confidence) == (
        FALLBACK_MIN_FAMILIARITY,
        FALLBACK_MIN_CONFIDENCE,
    )


@pytest.fixture
def familiarity() -> FamiliarityModel:
    import torch

    from vqa_engine.checks.familiarity import fit_familiarity

    generator = torch.Generator().manual_seed(0)
    return fit_familiarity(torch.randn(200, 4, generator=generator), clusters=2)
