"""URLs in Harper's answers that urllib cannot read never raise from a wire model (issue 20, S5)."""

import pytest

from harper_operator.harper.models import NodeWriteResult, node_name_from_url


@pytest.mark.parametrize("url", ["wss://[1.2.3.4]:9933", "wss://[::1::2]:9933", "wss://[zz", "https://[:]:1"])
def test_an_unreadable_url_names_no_node(url):
    assert node_name_from_url(url) == ""
    assert NodeWriteResult.model_validate({"message": "ok", "url": url}).node_name == ""


def test_a_readable_url_names_its_host():
    assert node_name_from_url("wss://[FD00::1]:9933") == "fd00::1"
    assert node_name_from_url("wss://Harper-1:9933") == "harper-1"
