from pathlib import Path

import pytest
import yaml

from interview.config import PACKAGE_DIR
from interview.plans import PlanCatalog, PlanError, UnknownPlan

SHIPPED = PACKAGE_DIR / "plans"


def test_shipped_plans_load_and_are_complete():
    catalog = PlanCatalog.load(SHIPPED)
    assert {"backend-engineer-screen", "customer-support-screen"} <= set(catalog.ids())
    for plan in catalog.all():
        assert plan.greeting and plan.closing and plan.time_budget_minutes > 0
        assert len(plan.questions) >= 3
        assert all(q.follow_ups for q in plan.questions)


def test_unknown_plan_lists_valid_ids():
    catalog = PlanCatalog.load(SHIPPED)
    with pytest.raises(UnknownPlan) as info:
        catalog.get("astronaut")
    assert info.value.valid == catalog.ids()


def _plan(**overrides):
    plan = yaml.safe_load((SHIPPED / "customer-support-screen.yaml").read_text())
    plan.update(overrides)
    return plan


def test_json_plans_are_accepted(tmp_path: Path):
    import json

    (tmp_path / "p.json").write_text(json.dumps(_plan(id="json-plan")))
    assert PlanCatalog.load(tmp_path).ids() == ["json-plan"]


def test_question_with_unknown_competency_names_the_file(tmp_path: Path):
    plan = _plan()
    plan["questions"][0]["competency"] = "telepathy"
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanError, match=r"(?s)broken\.yaml.*telepathy"):
        PlanCatalog.load(tmp_path)


def test_duplicate_plan_ids_are_refused(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(_plan()))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(_plan()))
    with pytest.raises(PlanError, match="already defined"):
        PlanCatalog.load(tmp_path)


def test_missing_field_and_bad_yaml_are_refused(tmp_path: Path):
    plan = _plan()
    del plan["closing"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanError, match="closing"):
        PlanCatalog.load(tmp_path)
    (tmp_path / "a.yaml").write_text("id: [unclosed")
    with pytest.raises(PlanError, match=r"a\.yaml"):
        PlanCatalog.load(tmp_path)


def test_empty_directory_is_refused(tmp_path: Path):
    with pytest.raises(PlanError, match="no interview plans"):
        PlanCatalog.load(tmp_path)


def test_vocabulary_is_optional_and_blank_terms_are_refused(tmp_path: Path):
    shipped = PlanCatalog.load(SHIPPED)
    assert "PostgreSQL" in shipped.get("backend-engineer-screen").vocabulary
    assert "Zendesk" in shipped.get("customer-support-screen").vocabulary
    plan = _plan(id="no-words")
    plan.pop("vocabulary")
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(plan))
    assert PlanCatalog.load(tmp_path).get("no-words").vocabulary == []
    (tmp_path / "blank.yaml").write_text(yaml.safe_dump(_plan(id="blank", vocabulary=["SLA", " "])))
    with pytest.raises(PlanError, match=r"(?s)blank\.yaml.*vocabulary"):
        PlanCatalog.load(tmp_path)
