"""Op parameters are frozen (hashable, order-stable) in plans and thawed back for boto3 / the Docker SDK: the
round trip gives back exactly what went in, whatever the shape (no guessing dicts from pairs)."""

from __future__ import annotations

import pytest

from provision.ops import Ec2Call, freeze, params, thaw

pytestmark = pytest.mark.unit


def test_thaw_undoes_freeze_for_every_shape() -> None:
    value = {"Tags": [], "Empty": {}, "Pairs": [["a", "b"], ["c", "d"]],
             "Perms": [{"IpProtocol": "tcp", "FromPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}]}
    assert thaw(freeze(value)) == value
    assert thaw(freeze([["key", "value"]])) == [["key", "value"]]  # a list of string pairs stays a list
    assert freeze(freeze(value)) == freeze(value) and thaw(freeze(freeze(value))) == value


def test_frozen_params_are_hashable_and_compare_by_content() -> None:
    a = Ec2Call("security_group.authorize", params(perms=[{"FromPort": 22, "ToPort": 22}]))
    b = Ec2Call("security_group.authorize", params(perms=[{"ToPort": 22, "FromPort": 22}]))
    c = Ec2Call("security_group.authorize", params(perms=[{"FromPort": 2222, "ToPort": 2222}]))
    assert a == b and hash(a) == hash(b) and a != c
