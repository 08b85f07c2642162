"""The answer checks' figures (``ChecksEvaluation``), and the same as Markdown: printed by
``vqa_engine.tools.evaluate`` and written into the model card's checks section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vqa_engine.modular.package_format import RISK_COVERAGE_FILE


@dataclass
class ChecksEvaluation:
    package: str
    image_check: str
    options: dict[str, object]
    test: dict[str, object]
    ood: dict[str, object] = field(default_factory=dict)
    detectors: list[dict[str, object]] = field(default_factory=list)
    questions: dict[str, object] = field(default_factory=dict)
    #: selective prediction per set (``vqa_engine.tools.evaluate_selective``): coverage, risk, AURC
    selective: dict[str, object] = field(default_factory=dict)
    #: the risk–coverage curves behind it (not in the JSON: drawn by ``--update-card``)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict, repr=False)
    seconds: float = 0.0


def _pct(value: object, digits: int = 1) -> str:
    return "–" if value is None else f"{float(value):.{digits}%}"  # type: ignore[arg-type]


def format_checks_report(result: ChecksEvaluation) -> str:
    """Markdown tables of the checks' figures (also the model card's checks section)."""
    t, o, q = result.test, result.ood, result.questions
    opts = result.options
    reasons = t["abstained_by_reason"]
    assert isinstance(reasons, dict)
    lines = [
        f"Answer checks (image check: {result.image_check}; MAX_ANSWER_RISK={opts['max_answer_risk']}: "
        f"MIN_IMAGE_FAMILIARITY={opts['min_image_familiarity']:g}, "
        f"MIN_CONFIDENCE={opts['min_confidence']:g})",
        "",
        *format_selective(result.selective),
        "| official easy-VQA test split | |",
        "|---|---:|",
        f"| questions answered without abstaining | {_pct(t['answered'], 2)} of {t['questions']:,} |",
        f"| accuracy on those | {_pct(t['accuracy_answered'], 2)} "
        f"(all questions: {_pct(t['accuracy_all'], 2)}) |",
        "| abstained, by reason | " + ", ".join(f"{r} {n}" for r, n in reasons.items()) + " |",
        f"| questions flagged by the question checks | {_pct(t['question_checks_flagged'], 2)} |",
        f"| test pictures flagged unfamiliar | {_pct(t['images_unfamiliar'], 2)} of {t['images']:,} |",
        "",
        f"Out-of-distribution pictures ({o['images']} in `{Path(str(o['folder'])).name}`): "
        f"**{_pct(o['unfamiliar'])} flagged unfamiliar_image**, AUROC **{_fmt(o['auroc'])}** "
        "(familiarity, against the test pictures).",
        "",
        "| kind | pictures | flagged unfamiliar_image | answers abstained (any reason) |",
        "|---|---:|---:|---:|",
    ]
    by_kind = o["by_kind"]
    assert isinstance(by_kind, dict)
    lines += [
        f"| {k} | {v['images']} | {_pct(v['unfamiliar'])} | {_pct(v.get('answers_abstained'))} |"
        for k, v in by_kind.items()
    ]
    lines += [
        "",
        f"Each picture asked {o['questions_per_image']} test questions: {_pct(o['pairs_abstained'])} of the "
        f"answers abstain; the confidence rule alone (the fallback without statistics) would flag "
        f"{_pct(o['pairs_low_confidence_rule'])}.",
        "",
        "| detector, (picture, question) pairs: OOD vs test | AUROC |",
        "|---|---:|",
        *(f"| {d['name']} | {_fmt(d['auroc'])} |" for d in result.detectors),
    ]
    if q:
        lines += _question_lines(q)
    return "\n".join(lines)


def _question_lines(q: dict[str, object]) -> list[str]:
    """The report's off-template questions paragraph and table."""
    kinds = q["by_kind"]
    assert isinstance(kinds, dict)
    return [
        "",
        f"Off-template questions (`{Path(str(q['file'])).name}`, each about {q['images_per_question']} "
        f"test pictures): **{_pct(q['off_template_flagged'])} flagged** (unknown words, gibberish, "
        f"emoji, and answers of the wrong type); official test questions flagged: "
        f"**{_pct(q['test_questions_flagged'], 2)}**.",
        "",
        "| kind | questions | flagged |",
        "|---|---:|---:|",
        *(f"| {k} | {v['questions']} | {_pct(v['flagged'])} |" for k, v in kinds.items()),
        "",
        f"Questions in the vocabulary's own words: the answer had the wrong type in "
        f"{_pct(q['known_words_wrong_type'])} of the pairs, "
        f"{_pct(q['known_words_wrong_type_flagged'])} of those flagged; "
        f"right-type answers flagged: {_pct(q['known_words_right_type_flagged'])}.",
    ]


def format_selective(selective: dict[str, object]) -> list[str]:
    """Will an answer be right? The per-set table, per kind of drawn picture, and the curves' PNG."""
    if not selective:
        return []
    test, near, ood = (selective[k] for k in ("easy_vqa_test", "near", "ood"))
    assert isinstance(test, dict) and isinstance(near, dict) and isinstance(ood, dict)

    def row(name: str, f: dict[str, object]) -> str:
        return (
            f"| {name} | {f['questions']:,} | {_pct(f['coverage'], 2)} | {_pct(f['accuracy_answered'], 2)} | "
            f"{_pct(f['risk_answered'], 2)} | {float(f['aurc']):.4f} |"  # type: ignore[arg-type]
        )

    held_out = ", ".join(near["held_out_kinds"])  # type: ignore[arg-type]
    lines = [
        "| set | questions | answered (coverage) | accuracy of the answered | wrong among the answered "
        "(risk) | AURC |",
        "|---|---:|---:|---:|---:|---:|",
        row("easy-VQA test split", test),
        row(f"pictures as people draw them ({near['pictures']:,}, `near_set` seed {near['seed']})", near),
        f"| out-of-distribution (picture, question) pairs | {ood['questions']:,} | "
        f"{_pct(1 - float(ood['flagged']), 2)} (**{_pct(ood['flagged'], 2)} flagged**) | – | – | – |",  # type: ignore[arg-type]
        "",
        f"Pictures as people draw them, by kind of variation (training never saw {held_out}):",
        "",
        "| kind | questions | answered | accuracy of the answered | risk | AURC |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    by_kind = near["by_kind"]
    assert isinstance(by_kind, dict)
    lines += [row(kind, figures) for kind, figures in by_kind.items()]
    lines += ["", f"![risk against coverage]({RISK_COVERAGE_FILE})", ""]
    return lines


def _fmt(value: object) -> str:
    return "–" if value is None else f"{float(value):.4f}"  # type: ignore[arg-type]
