"""Published figures: the package's file is valid and its course figures are the course documents' own; each is
shown beside the arms it matches, in its own table marked "published", with how its setting differs."""

import json
import re
from pathlib import Path

import pytest

from cifarlab.analysis import findings, references
from cifarlab.analysis.origin import Origins
from cifarlab.analysis.report import build
from cifarlab.analysis.runs import find_runs
from cifarlab.errors import CifarlabError

from tests.analysis.test_report import _fake_run

COURSE = Path(__file__).resolve().parents[2] / ".." / "shared" / "course"


def test_the_package_file_parses_and_covers_each_question():
    refs = references.load()
    assert len(refs) >= 13
    assert {r.question for r in refs.values()} == {"transfer", "supcon", "rotation"}
    assert all(r.source and r.setting and r.models for r in refs.values())


@pytest.mark.skipif(not COURSE.is_dir(), reason="the course documents are not beside the repository")
def test_course_figures_are_the_documents_own():
    """Each course reference's figure appears in the document it names ("around 78%" for approximate ones)."""
    course = [r for r in references.load().values() if r.source.startswith("course: ")]
    assert len(course) == 8
    for r in course:
        text = (COURSE / re.match(r"course: (\S+?\.txt)", r.source).group(1)).read_text()
        figure = f"around {r.value:.0f}%" if r.approx else f"{r.value:.2f}%"
        assert figure in text, (r.id, figure)


@pytest.mark.parametrize("entry, message", [
    ({"id": "x"}, "reference 'x' lacks value"),
    ({**{k: "a" for k in references.REQUIRED}, "models": ["*"], "value": 1, "start": "any", "colour": 1},
     "unknown key"),
    ({**{k: "a" for k in references.REQUIRED}, "models": ["*"], "value": 1, "start": "moon"}, "start 'moon'"),
])
def test_a_bad_entry_names_the_file_and_the_entry(entry, message):
    with pytest.raises(CifarlabError, match=re.escape(message)):
        references.parse([entry], "refs.toml")


def _rotation_study(root, model="resnet18", config=None):
    rot = _fake_run(root, "rot", "rotation", 0.7, 0, model=model, start="none",
                    summary={"rotation_test_acc": 0.7, "test_acc": None})
    for s in range(3):
        _fake_run(root, f"ft-rot-s{s}", "finetune", 0.80 + s / 100, s, model=model, start=f"init:{rot}",
                  summary={"num_train": 45000, "num_test": 10000}, config=config)
        _fake_run(root, f"ft-rand-s{s}", "finetune", 0.75 + s / 100, s, model=model, start="none")
    return find_runs(root)


def test_a_rotation_finetune_arm_gets_the_assignment_and_the_paper_with_their_differences(tmp_path):
    runs = _rotation_study(tmp_path)
    (f,) = [f for f in findings.answer(runs) if f.key == "rotation"]
    got = {(m.arm.label, m.reference.id): m for m in references.matches(f, Origins(runs))}
    rot_arm = "resnet18, full fine-tuning, rotation init, all"
    assert set(got) == {(rot_arm, "rotnet-assignment-whole"), (rot_arm, "gidaris2018-rotnet-finetuned"),
                        ("resnet18, rotation pretext", "rotnet-assignment-rotation")}
    whole = got[(rot_arm, "rotnet-assignment-whole")].differences
    assert "architecture torchvision ResNet18 (ImageNet stem) (this arm: resnet18)" in whole
    assert "50,000 training images (this arm: 45,000 training images)" in whole
    assert "dataset CIFAR-10 (this arm: synthetic)" in whole
    assert "10,000 test images" not in " ".join(whole)  # equal in both: not a difference
    assert "architecture NIN" in " ".join(got[(rot_arm, "gidaris2018-rotnet-finetuned")].differences)


def test_the_report_shows_references_apart_marked_published_and_never_as_a_measurement(tmp_path):
    _rotation_study(tmp_path / "runs")
    text = build(tmp_path / "runs", "html", tmp_path / "r.html", embedding="none").read_text()
    section = text[text.index('id="q-rotation"'):]
    section = section[:section.index("</section>")]
    arms = section[section.index('<table class="arms">'):]
    arms = arms[:arms.index("</table>")]
    published = section[section.index('<table class="published-figures">'):]
    assert "92.17" not in arms and "~80.00%" not in arms  # not in the measured table
    assert '<span class="published">published</span> ~80.00%' in published
    assert '<span class="published">published</span> 92.17%' in published
    assert "92.17" not in (tmp_path / "r.findings.json").read_text()


def test_a_run_may_name_its_reference_and_an_unknown_one_is_refused(tmp_path):
    runs = _rotation_study(tmp_path / "a", config={"reference": "tutorial-alexnet-frozen"})
    (f,) = [f for f in findings.answer(runs) if f.key == "rotation"]
    named = [m for m in references.matches(f, Origins(runs)) if m.named]
    assert [(m.arm.label, m.reference.id) for m in named] == [("resnet18, full fine-tuning, rotation init, all",
                                                                "tutorial-alexnet-frozen")]
    _rotation_study(tmp_path / "b", config={"reference": "no-such-paper"})
    with pytest.raises(CifarlabError, match=r"config.json: config key reference = 'no-such-paper' is not a known "
                                            r"reference; choose from: .*khosla2020-supcon"):
        build(tmp_path / "b", "html", tmp_path / "r.html", embedding="none")
    assert json.loads((tmp_path / "a" / "ft-rot-s0" / "config.json").read_text())["config"]["reference"]
