"""The EC2 teardown plan: pure (TeardownFacts) -> list[Change]; terminate the tagged instances (every index of
host.count), then delete the tagged security group(s) and key pair. Split from provision.plan.host."""

from __future__ import annotations

from provision.changes import Change, Step
from provision.facts.aws import SecurityGroupFact, TeardownFacts, owned
from provision.ops import Ec2Call, params
from provision.plan.host import instance_wait


def plan_teardown(facts: TeardownFacts, project: str, environment: str) -> list[Change]:
    """Terminate the tagged instances, then delete the tagged security group(s) and key pair."""
    changes: list[Change] = []
    instances = [i for i in facts.instances
                 if owned(i.tags, project, environment) and i.state != "terminated"]
    if instances:
        live = [i.id for i in instances if i.state != "shutting-down"]
        every = [i.id for i in instances]
        steps = []
        if live:
            steps.append(Step(f"terminate {', '.join(live)}",
                              Ec2Call("instance.terminate", params(ids=live))))
        steps.append(Step("wait until terminated", instance_wait("instance.terminated", *every)))
        changes.append(Change("aws:instance", "delete", ", ".join(f"{i.id} {i.state}" for i in instances),
                              tuple(steps), data={"instances": every}))
    groups: list[SecurityGroupFact] = [g for g in facts.security_groups
                                       if owned(g.tags, project, environment)]
    for g in groups:
        changes.append(Change("aws:security-group", "delete", f"{g.name} ({g.id}) in {g.vpc_id}", (
            Step(f"delete security group {g.name} ({g.id})",
                 Ec2Call("security_group.delete", params(group_id=g.id))),),
            data={"id": g.id}))
    kp = facts.key_pair
    if kp is not None and owned(kp.tags, project, environment):
        name = kp.name
        changes.append(Change("aws:key-pair", "delete", name, (
            Step(f"delete key pair {name}", Ec2Call("key_pair.delete", params(name=name))),),
            data={"name": name}))
    return changes
