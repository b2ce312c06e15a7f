"""The KRaft cluster id that `oddsflow services up` formats the broker's storage with."""

from __future__ import annotations

import base64
import uuid

from oddsflow import services as svc


def test_a_cluster_id_is_22_base64url_chars_of_a_uuid():
    cid = svc.kraft_cluster_id()
    assert len(cid) == 22
    assert uuid.UUID(bytes=base64.urlsafe_b64decode(cid + "==")).version == 4


def test_an_id_that_would_start_with_a_dash_is_drawn_again(monkeypatch):
    # 0xF8 as the first byte encodes to "-" in base64url: kafka-storage would read
    # `--cluster-id -...` as a missing value (the failure seen in CI, one start in 64).
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(svc.uuid, "uuid4", lambda: next(draws))
    cid = svc.kraft_cluster_id()
    assert not cid.startswith("-")
    assert base64.urlsafe_b64decode(cid + "==") == plain.bytes
