"""Which deployment a process belongs to: what its containers carry and its reaper keeps to."""

from __future__ import annotations

from runner.ports import ContainerSpec
from runner.sandbox import labels as lbl
from runner.settings import load_settings


def test_given_no_setting_then_the_deployment_follows_the_database_not_its_password():
    one = load_settings({"DEVTEAM_DATABASE_URL": "postgresql+asyncpg://u:a@db:5432/prod"})
    same = load_settings({"DEVTEAM_DATABASE_URL": "postgresql+asyncpg://u:b@db:5432/prod"})
    other = load_settings({"DEVTEAM_DATABASE_URL": "postgresql+asyncpg://u:a@db:5432/staging"})

    assert lbl.deployment_of(one) == lbl.deployment_of(same)
    assert lbl.deployment_of(one) != lbl.deployment_of(other)
    assert "a@" not in lbl.deployment_of(one)


def test_given_a_deployment_setting_then_it_names_the_deployment():
    assert lbl.deployment_of(load_settings({"DEVTEAM_SANDBOX_DEPLOYMENT": "staging"})) == "staging"


def test_a_container_s_labels_carry_its_deployment_when_it_has_one():
    plain = ContainerSpec(customer_id="c", project_id="c/p", execution_id="e", task_id="1")
    deployed = ContainerSpec(customer_id="c", project_id="c/p", execution_id="e", task_id="1",
                             deployment="prod")

    assert lbl.DEPLOYMENT not in lbl.labels(plain)
    assert lbl.labels(deployed)[lbl.DEPLOYMENT] == "prod"
