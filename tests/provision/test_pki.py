"""provision/pki.py: the cluster CA and the certificates it issues, checked with the ssl module a client uses."""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from harper_operator.provision import pki

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
HOST = "hc-0.hc.ns.svc.cluster.local"


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.new_authority("ns/hc", NOW)


@pytest.fixture(scope="module")
def leaf(ca) -> pki.KeyPair:
    return pki.issue(ca, HOST, ["hc-client.ns.svc", "localhost", "127.0.0.1"], NOW)


def test_the_authority_is_a_ca_that_signs_only_certificates(ca):
    cert = pki.load(ca.certificate)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.key_encipherment
    assert "ns/hc" in cert.subject.rfc4514_string()
    assert pki.matches(ca)


def test_a_leaf_is_for_its_names_both_ways_and_signed_by_the_authority(ca, leaf):
    cert = pki.load(leaf.certificate)
    assert pki.names(leaf.certificate) == {HOST, "hc-client.ns.svc", "localhost", "127.0.0.1"}
    assert cert.subject.rfc4514_string() == f"CN={HOST}"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Harper's replication is mutual TLS: each pod's certificate serves and is presented as a client.
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert pki.signed_by(leaf.certificate, ca.certificate) and pki.matches(leaf)
    other = pki.new_authority("ns/hc", NOW)  # same cluster, another authority: not its signer
    assert not pki.signed_by(leaf.certificate, other.certificate)
    assert not pki.matches(pki.KeyPair(leaf.certificate, other.key))


def test_a_leaf_never_outlives_its_authority():
    short = pki.new_authority("ns/hc", NOW, lifetime=timedelta(days=30))
    assert pki.expires(pki.issue(short, HOST, [], NOW).certificate) == pki.expires(short.certificate)


def test_due_once_less_than_a_third_of_the_lifetime_is_left(leaf):
    life = pki.expires(leaf.certificate) - (NOW - pki.BACKDATE)
    assert not pki.due(leaf.certificate, NOW)
    assert not pki.due(leaf.certificate, NOW + life * 0.66)
    assert pki.due(leaf.certificate, NOW + life * 0.67)
    assert pki.due(leaf.certificate, NOW + life * 2)  # expired
    assert pki.due(leaf.certificate, NOW - timedelta(days=1))  # not yet valid


def test_bad_text_is_refused_without_being_quoted():
    secret = "-----BEGIN CERTIFICATE-----\nc2VjcmV0LXBhc3N3b3Jk\n-----END CERTIFICATE-----\n"
    for call in (lambda: pki.load(secret), lambda: pki.load_all("hunter2"), lambda: pki.due("hunter2", NOW),
                 lambda: pki.matches(pki.KeyPair(secret, "hunter2"))):
        with pytest.raises(pki.BadCertificate) as err:
            call()
        assert "c2VjcmV0" not in str(err.value) and "hunter2" not in str(err.value)


def test_a_bundle_keeps_each_certificate_once_in_order(ca):
    new = pki.new_authority("ns/hc", NOW + timedelta(days=1))
    both = pki.bundle(ca.certificate, new.certificate, ca.certificate)
    assert [c.subject for c in pki.load_all(both)] == [pki.load(ca.certificate).subject,
                                                        pki.load(new.certificate).subject]
    assert pki.bundle("") == ""


def _handshake(tmp_path: Path, server: pki.KeyPair, client: pki.KeyPair | None, trust: str, name: str) -> str:
    """A real TLS handshake over a socket pair: the server asks for a client certificate (mutual TLS, as Harper's
    replication does) and trusts `trust`; the client verifies the server against `trust` and `name`."""
    for label, pair in (("server", server), ("client", client)):
        if pair:
            (tmp_path / f"{label}.crt").write_text(pair.certificate)
            (tmp_path / f"{label}.key").write_text(pair.key)
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    srv.load_verify_locations(cadata=trust)
    srv.verify_mode = ssl.CERT_REQUIRED
    cli = ssl.create_default_context(cadata=trust)
    if client:
        cli.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    a, b = socket.socketpair()
    errors: list[str] = []

    def serve() -> None:
        try:
            with srv.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(f"server: {exc}")

    t = threading.Thread(target=serve)
    t.start()
    try:
        with cli.wrap_socket(b, server_hostname=name) as c:
            c.sendall(b"x")
            peer = c.getpeercert()
    except (ssl.SSLError, OSError) as exc:
        errors.append(f"client: {exc}")
        peer = None
    t.join(10)
    if errors:  # either side may fail first; the client's own reason first
        return " | ".join(sorted(errors))
    assert peer is not None
    return "ok"


def test_two_pods_of_one_authority_trust_each_other_both_ways(tmp_path):
    now = datetime.now(timezone.utc)  # the ssl module checks validity against the real clock
    ca = pki.new_authority("ns/hc", now)
    leaf = pki.issue(ca, HOST, ["hc-client.ns.svc"], now)
    other = pki.issue(ca, "hc-1.hc.ns.svc.cluster.local", [], now)
    assert _handshake(tmp_path, leaf, other, ca.certificate, HOST) == "ok"
    assert _handshake(tmp_path, leaf, other, ca.certificate, "hc-client.ns.svc") == "ok"
    assert "hostname mismatch" in _handshake(tmp_path, leaf, other, ca.certificate, "elsewhere.example").lower()
    stranger = pki.new_authority("ns/hc", now)
    assert "certificate verify failed" in _handshake(tmp_path, leaf, other, stranger.certificate, HOST)
    # A client certificate of another authority is refused by the server (mutual TLS).
    assert _handshake(tmp_path, leaf, pki.issue(stranger, "x", [], now), ca.certificate, HOST).count("server: [SSL: CERTIFICATE_VERIFY_FAILED]")
    # During a rollover the bundle of both authorities trusts pods of either.
    rolled = pki.issue(stranger, "hc-1.hc.ns.svc.cluster.local", [], now)
    assert _handshake(tmp_path, leaf, rolled, pki.bundle(ca.certificate, stranger.certificate), HOST) == "ok"


def test_certificates_keeps_the_good_ones_and_issues_the_rest(ca, leaf):
    names = (HOST, "hc-client.ns.svc", "localhost", "127.0.0.1")
    other_ca = pki.new_authority("ns/hc", NOW)
    foreign = pki.issue(other_ca, "hc-1.x", ["hc-1.x"], NOW)
    got = pki.certificates(ca, {"hc-0": leaf, "hc-1": foreign, "hc-9": leaf},
                           {"hc-0": names, "hc-1": ("hc-1.x",), "hc-2": ("hc-2.x", "127.0.0.1")}, NOW)
    assert set(got) == {"hc-0", "hc-1", "hc-2"}  # hc-9 is not wanted any more
    assert got["hc-0"] is leaf  # good: kept as it is, so nothing is rewritten
    assert got["hc-1"] != foreign and pki.signed_by(got["hc-1"].certificate, ca.certificate)
    assert pki.names(got["hc-2"].certificate) == {"hc-2.x", "127.0.0.1"}
    # A name added to what is wanted, a certificate due, a key that is not its own, or junk: issued again.
    assert pki.certificates(ca, {"hc-0": leaf}, {"hc-0": (*names, "new.name")}, NOW)["hc-0"] != leaf
    assert pki.certificates(ca, {"hc-0": leaf}, {"hc-0": names}, NOW + timedelta(days=300))["hc-0"] != leaf
    assert pki.certificates(ca, {"hc-0": pki.KeyPair(leaf.certificate, foreign.key)}, {"hc-0": names},
                            NOW)["hc-0"].certificate != leaf.certificate
    assert pki.certificates(ca, {"hc-0": pki.KeyPair("junk", "junk")}, {"hc-0": names}, NOW)["hc-0"].key != "junk"


def test_an_authority_is_read_from_its_secret_with_a_rollovers_previous_key(ca):
    plain = pki.read_authority(ca.certificate, ca.key)
    assert plain.signing == ca and plain.trusted == (ca.certificate,) and plain.previous is None
    assert not plain.rolling() and plain.signer(False) == ca
    rolled = pki.roll_over(plain, "ns/hc", NOW)
    assert rolled.previous == ca and rolled.trusted == (rolled.signing.certificate, ca.certificate)
    assert pki.split(rolled.bundle)[0] == rolled.signing.certificate  # the new one first: Harper imports the first
    again = pki.read_authority(rolled.bundle, rolled.signing.key, ca.key)
    assert again == rolled  # what the Secret holds is all of it
    # A previous key that matches no trusted certificate is no previous authority (a user's chain, or junk).
    assert pki.read_authority(rolled.bundle, rolled.signing.key, rolled.signing.key).previous is None
    assert pki.settled(rolled) == pki.Authority(rolled.signing, (rolled.signing.certificate,))
    # A second rollover keeps two authorities, not three.
    assert len(pki.roll_over(rolled, "ns/hc", NOW).trusted) == 2
    with pytest.raises(pki.BadCertificate):
        pki.read_authority("", ca.key)


def test_a_rollover_signs_with_the_old_authority_until_every_pod_trusts_the_new(ca, leaf):
    """The pods keep what they have while some pod does not trust the new authority yet (a certificate of it would cut
    that pod off from its peers); then each moves to a certificate of the new one."""
    names = (HOST, "hc-client.ns.svc", "localhost", "127.0.0.1")
    rolled = pki.roll_over(pki.read_authority(ca.certificate, ca.key), "ns/hc", NOW)
    wanted = {"hc-0": names, "hc-1": ("hc-1.x",)}
    before = pki.certificates(rolled.signer(False), {"hc-0": leaf}, wanted, NOW, rolled.accepted(False))
    assert before["hc-0"] is leaf  # the old authority's certificate stays
    assert pki.signed_by(before["hc-1"].certificate, ca.certificate)  # a new pod's: still the old authority's
    after = pki.certificates(rolled.signer(True), before, wanted, NOW, rolled.accepted(True))
    assert all(pki.signed_by(pair.certificate, rolled.signing.certificate) for pair in after.values())
    assert pki.certificates(rolled.signer(True), after, wanted, NOW, rolled.accepted(True)) == after  # then stays
    # Both trusted at once: a client with the bundle verifies either.
    assert all(any(pki.signed_by(p.certificate, c) for c in rolled.trusted) for p in [*before.values(), *after.values()])
