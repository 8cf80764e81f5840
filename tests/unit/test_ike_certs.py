"""IKEv1 Main Mode with RSA signatures and X.509 certificates (RFC 2409 5.1), in memory."""

from __future__ import annotations

import contextlib
import datetime
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.harness.capture import tshark_problems
from tests.harness.pki import Pair, make_cert, make_crl, name, write_ca, write_crl, write_pair
from tests.unit.test_ike_mainmode import CLIENT, SERVER, Host, Net, connect, rng

from pyl2tp.errors import ConfigError
from pyl2tp.ike.certs import (
    MAX_PATH,
    MAX_PEER_CERTS,
    CertError,
    Credentials,
    load_credentials,
    rsa_sign_raw,
    rsa_verify_raw,
    verify_chain,
)
from pyl2tp.ike.crl import CrlSet, load_crls
from pyl2tp.ike.endpoint import IKEConfig, IKEEndpoint
from pyl2tp.ike.events import AuthenticationFailed, ChildSAEstablished, IKESAEstablished
from pyl2tp.ike.proposals import AuthMethod, Policy
from pyl2tp.keylog import KeyLog, tshark_options
from pyl2tp.wire.isakmp import (
    CertRequestPayload,
    IDPayload,
    IDType,
    decode_message,
    decode_payloads,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def _key(name: str) -> rsa.RSAPrivateKey:
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pyl2tp test"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def make_ca(cn: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 365 * DAY).not_valid_after(NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    cn: str, ca: tuple[x509.Certificate, rsa.RSAPrivateKey], *, san: list[str] | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca[0].subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 30 * DAY).not_valid_after(not_after or NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False
        )
    return builder.sign(ca[1], hashes.SHA256()), key


def creds(leaf: tuple[x509.Certificate, rsa.RSAPrivateKey], cas: list[x509.Certificate],
          now: datetime.datetime = NOW) -> Credentials:
    return Credentials(leaf[0], leaf[1], cas, lambda: now)


def cfg(c: Credentials, **kw: object) -> IKEConfig:
    policy = Policy(auth_methods=(AuthMethod.RSA_SIGNATURE,))
    return IKEConfig(credentials=c, policy=policy, **kw)  # type: ignore[arg-type]


def run(client_cfg: IKEConfig, server_cfg: IKEConfig) -> tuple[Net, Host, Host]:
    net = Net()
    server = net.add(SERVER, server_cfg, 1)
    client = net.add(CLIENT, client_cfg, 2)
    connect(net, client)
    return net, client, server


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return make_ca("Test CA")


# -- raw RSA signature ------------------------------------------------------------------


def test_raw_signature_checked_by_cryptography() -> None:
    key = _key("signer")
    digest = bytes(range(20))
    sig = rsa_sign_raw(key, digest)
    assert len(sig) == 256
    # independent check: OpenSSL's PKCS#1 v1.5 verify-recover with no DigestInfo
    recovered = key.public_key().recover_data_from_signature(sig, padding.PKCS1v15(), None)
    assert recovered == digest
    assert rsa_verify_raw(key.public_key(), digest, sig)
    assert not rsa_verify_raw(key.public_key(), bytes(20), sig)
    assert not rsa_verify_raw(key.public_key(), digest, sig[:-1] + bytes([sig[-1] ^ 1]))
    # a DigestInfo signature (what PKCS1v15 + a hash makes) is not an IKEv1 signature
    other = key.sign(b"x", padding.PKCS1v15(), hashes.SHA1())
    assert not rsa_verify_raw(key.public_key(), digest, other)


# -- chain checks -----------------------------------------------------------------------


def test_verify_chain(ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    leaf = make_leaf("client1", ca)
    verify_chain(leaf[0], [ca[0]], NOW)
    with pytest.raises(CertError, match="not valid now"):
        verify_chain(leaf[0], [ca[0]], NOW + 60 * DAY)
    other = make_ca("Other CA")
    with pytest.raises(CertError, match="not issued by a trusted CA"):
        verify_chain(make_leaf("mallory", other)[0], [ca[0]], NOW)
    # same subject as our CA, another key: the signature does not verify
    fake = make_ca("Fake")
    fake_ca = (ca[0], fake[1])
    forged = make_leaf("forged", fake_ca)
    with pytest.raises(CertError, match="does not verify"):
        verify_chain(forged[0], [ca[0]], NOW)
    # an end-entity certificate is not a CA (basic constraints)
    with pytest.raises(CertError, match="CN=client1,O=pyl2tp test is not a CA"):
        verify_chain(make_leaf("sub", leaf)[0], [leaf[0]], NOW)


# -- Main Mode --------------------------------------------------------------------------


def test_main_mode_with_certificates(ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    client_c = creds(make_leaf("client1", ca), [ca[0]])
    server_c = creds(make_leaf("vpn.example.test", ca), [ca[0]])
    net, client, server = run(cfg(client_c), cfg(server_c))
    se = server.of(IKESAEstablished)
    ce = client.of(IKESAEstablished)
    assert len(se) == 1 and len(ce) == 1
    assert se[0].peer_id == "CN=client1,O=pyl2tp test"
    assert ce[0].peer_id == "CN=vpn.example.test,O=pyl2tp test"
    # Quick Mode works on keys from SKEYID = prf(Ni | Nr, g^xy)
    assert server.of(ChildSAEstablished) and client.of(ChildSAEstablished)
    # MM3 and MM4 ask for an X.509 signature certificate from our CA (RFC 2408 3.10)
    for sent in net.log[2:4]:
        header, body = decode_message(sent.data)
        reqs = [p for p in decode_payloads(header.next_payload, body)
                if isinstance(p, CertRequestPayload)]
        assert reqs == [CertRequestPayload(4, ca[0].subject.public_bytes())]


def test_san_fqdn_identity(ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    client_c = creds(make_leaf("client2", ca, san=["alice.example.test"]), [ca[0]])
    server_c = creds(make_leaf("vpn2", ca), [ca[0]])
    _, _client, server = run(cfg(client_c, local_id="alice.example.test"), cfg(server_c))
    assert server.of(IKESAEstablished)[0].peer_id == "alice.example.test"


def test_id_not_in_certificate_refused(ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    client_c = creds(make_leaf("client3", ca), [ca[0]])
    server_c = creds(make_leaf("vpn3", ca), [ca[0]])
    _, _client, server = run(cfg(client_c, local_id="bob.example.test"), cfg(server_c))
    fails = server.of(AuthenticationFailed)
    assert len(fails) == 1 and "does not match the certificate" in fails[0].reason
    assert not server.of(IKESAEstablished)


def test_other_ca_refused(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey], caplog: pytest.LogCaptureFixture
) -> None:
    other = make_ca("Other CA")
    client_c = creds(make_leaf("mallory", other), [ca[0]])
    server_c = creds(make_leaf("vpn4", ca), [ca[0]])
    with caplog.at_level("WARNING", logger="pyl2tp.ike"):
        _, client, server = run(cfg(client_c), cfg(server_c))
    fails = server.of(AuthenticationFailed)
    assert len(fails) == 1 and "not issued by a trusted CA" in fails[0].reason
    assert f"IKE peer {CLIENT}:500: certificate authentication failed" in caplog.text
    assert not client.of(IKESAEstablished) and not server.of(IKESAEstablished)
    assert server.ep.ike_sas() == []


def test_expired_server_certificate_refused_by_client(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    client_c = creds(make_leaf("client5", ca), [ca[0]])
    expired = make_leaf("vpn5", ca, not_after=NOW - DAY)
    server_c = creds(expired, [ca[0]])
    _, client, server = run(cfg(client_c), cfg(server_c))
    assert server.of(IKESAEstablished)
    fails = client.of(AuthenticationFailed)
    assert len(fails) == 1 and "not valid now" in fails[0].reason
    assert not client.of(IKESAEstablished)


def test_psk_server_refuses_signature_proposal(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    client_c = creds(make_leaf("client6", ca), [ca[0]])
    _, _client, server = run(cfg(client_c), IKEConfig(psk=b"secret-psk"))
    assert not server.of(IKESAEstablished)
    assert server.ep.stats.no_proposal == 1


# -- files ------------------------------------------------------------------------------


def _pem(obj: x509.Certificate | rsa.RSAPrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_load_credentials(tmp_path: Path, ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    leaf = make_leaf("client7", ca)
    (tmp_path / "c.pem").write_bytes(_pem(leaf[0]))
    (tmp_path / "k.pem").write_bytes(_pem(leaf[1]))
    (tmp_path / "ca.pem").write_bytes(_pem(ca[0]))
    (tmp_path / "other.pem").write_bytes(_pem(_key("unrelated")))
    c = load_credentials(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), str(tmp_path / "ca.pem"))
    assert c.certificate == leaf[0] and c.cas == [ca[0]]
    with pytest.raises(ConfigError, match="does not match"):
        load_credentials(str(tmp_path / "c.pem"), str(tmp_path / "other.pem"), None)
    with pytest.raises(ConfigError, match="cannot read"):
        load_credentials(str(tmp_path / "none.pem"), str(tmp_path / "k.pem"), None)
    with pytest.raises(ConfigError, match="not a certificate"):
        load_credentials(str(tmp_path / "k.pem"), str(tmp_path / "k.pem"), None)


def test_signature_by_another_key_refused(ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    """A valid certificate does not help a peer that lacks its private key."""
    stolen = make_leaf("client8", ca)[0]
    client_c = Credentials(stolen, _key("thief"), [ca[0]], lambda: NOW)
    server_c = creds(make_leaf("vpn8", ca), [ca[0]])
    _, _client, server = run(cfg(client_c), cfg(server_c))
    fails = server.of(AuthenticationFailed)
    assert len(fails) == 1 and fails[0].reason.endswith("signature does not verify")
    assert not server.of(IKESAEstablished)


def test_psk_and_certificates_on_one_server(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    """A server with both accepts a PSK client and a certificate client."""
    methods = (AuthMethod.RSA_SIGNATURE, AuthMethod.PRE_SHARED_KEY)
    server_cfg = IKEConfig(
        psk=b"shared-secret", credentials=creds(make_leaf("vpn9", ca), [ca[0]]),
        policy=Policy(auth_methods=methods),
    )
    _, _c, server = run(IKEConfig(psk=b"shared-secret"), server_cfg)
    assert server.of(IKESAEstablished)[0].peer_id == CLIENT
    _, _c, server = run(cfg(creds(make_leaf("client9", ca), [ca[0]])), server_cfg)
    assert server.of(IKESAEstablished)[0].peer_id == "CN=client9,O=pyl2tp test"


# -- paths through intermediate CAs (RFC 5280 6.1) ----------------------------------------
# Choices, documented in docs/ipsec.md: every certificate in `ca` is a trust anchor; the
# peer's CERT payloads may come in any order (the leaf is the one that names the ID and made
# the signature); a revoked certificate ends the search at once; a CRL not signed by the
# issuer's key is ignored with a warning (it cannot revoke, and it cannot refuse anyone).


def pki(cn: str, issuer: Pair | None = None, *, ca: bool = True, **kw: Any) -> Pair:
    """A certificate valid around NOW, with a cached key per CN."""
    return make_cert(cn, issuer, ca=ca, key=_key(cn), now=NOW, **kw)


@pytest.fixture(scope="module")
def tree() -> dict[str, Pair]:
    """Root -> Intermediate -> Issuing CA -> leaf, and a leaf of the intermediate."""
    root = pki("Root CA")
    inter = pki("Intermediate CA", root)
    issuing = pki("Issuing CA", inter)
    return {
        "root": root, "inter": inter, "issuing": issuing,
        "leaf": pki("leaf.example.test", issuing, ca=False),
        "leaf1": pki("one.example.test", inter, ca=False),
    }


def test_chain_through_intermediates(tree: dict[str, Pair]) -> None:
    root, inter, issuing, leaf = (tree[k][0] for k in ("root", "inter", "issuing", "leaf"))
    assert verify_chain(leaf, [root], NOW, intermediates=[issuing, inter]) == [
        leaf, issuing, inter, root
    ]
    # the order of the intermediates does not matter, nor do unrelated extras
    extra = pki("Unrelated CA")[0]
    assert verify_chain(leaf, [root], NOW, intermediates=[extra, inter, issuing, leaf])[1:] == [
        issuing, inter, root
    ]
    # an intermediate in our `ca` file is a trust anchor: a peer may send its leaf alone
    assert verify_chain(leaf, [root, issuing], NOW) == [leaf, issuing]


def test_missing_intermediate(tree: dict[str, Pair]) -> None:
    root, inter, leaf = tree["root"][0], tree["inter"][0], tree["leaf"][0]
    with pytest.raises(CertError) as e:
        verify_chain(leaf, [root], NOW, intermediates=[inter])
    assert str(e.value) == (
        "certificate CN=leaf.example.test is not issued by a trusted CA (issuer CN=Issuing CA)"
    )


def test_chain_to_a_root_we_do_not_trust(tree: dict[str, Pair]) -> None:
    """The peer sends its whole chain with its own self-signed root: not an anchor."""
    rogue_root = pki("Rogue Root")
    rogue_inter = make_cert("Intermediate CA", rogue_root, ca=True, key=_key("rogue"), now=NOW)
    leaf = pki("x.example.test", rogue_inter, ca=False)[0]
    with pytest.raises(CertError, match="the path ends at CN=Rogue Root, a self-signed CA we"
                                        " do not trust"):
        verify_chain(leaf, [tree["root"][0]], NOW,
                     intermediates=[rogue_inter[0], rogue_root[0]])
    with pytest.raises(CertError, match=r"CN=Intermediate CA is not issued by a trusted CA "
                                        r"\(issuer CN=Rogue Root\)"):
        verify_chain(leaf, [tree["root"][0]], NOW, intermediates=[rogue_inter[0]])


def test_loop_of_intermediates(tree: dict[str, Pair]) -> None:
    """A issued by B, B issued by A: refused with a reason, no endless recursion."""
    ka, kb = _key("Loop A"), _key("Loop B")
    a_name, b_name = name("Loop A"), name("Loop B")
    a = make_cert("Loop A", (tree["root"][0], kb), ca=True, key=ka, now=NOW, issuer_name=b_name)
    b = make_cert("Loop B", (tree["root"][0], ka), ca=True, key=kb, now=NOW, issuer_name=a_name)
    leaf = pki("looped.example.test", a, ca=False)[0]
    with pytest.raises(CertError, match=r"CN=Loop B is not issued by a trusted CA \(issuer "
                                        r"CN=Loop A\)"):
        verify_chain(leaf, [tree["root"][0]], NOW, intermediates=[a[0], b[0]])


def test_same_name_certificates_cannot_explode_the_search(tree: dict[str, Pair]) -> None:
    """Ten CA certificates with one name and one key all verify one another: the search
    is bounded (path length, then a budget of signature checks)."""
    key = _key("Mesh CA")
    mesh = [make_cert("Mesh CA", None, ca=True, key=key, now=NOW, days=30 + i)[0]
            for i in range(MAX_PEER_CERTS - 1)]
    leaf = pki("mesh.example.test", (mesh[0], key), ca=False)[0]
    with pytest.raises(CertError, match="gave up after 64 signature checks"):
        verify_chain(leaf, [tree["root"][0]], NOW, intermediates=mesh)


def test_expired_intermediate(tree: dict[str, Pair]) -> None:
    root = tree["root"]
    old = pki("Old Intermediate", root, not_after=NOW - DAY)
    leaf = pki("old.example.test", old, ca=False, not_after=NOW + DAY)[0]
    with pytest.raises(CertError) as e:
        verify_chain(leaf, [root[0]], NOW, intermediates=[old[0]])
    assert str(e.value) == (
        "CA certificate CN=Old Intermediate is not valid now (expired 2026-05-31 00:00:00 UTC)"
    )


def test_intermediate_without_ca_bit(tree: dict[str, Pair]) -> None:
    root = tree["root"]
    fake = pki("Not A CA", root, ca=False)
    leaf = pki("fake.example.test", fake, ca=False)[0]
    with pytest.raises(CertError, match=r"certificate CN=Not A CA is not a CA \(no "
                                        r"basicConstraints CA:TRUE\), yet it issued"):
        verify_chain(leaf, [root[0]], NOW, intermediates=[fake[0]])


def test_intermediate_without_key_cert_sign(tree: dict[str, Pair]) -> None:
    root = tree["root"]
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )
    ca = pki("Signing-Only CA", root, key_usage=usage)
    leaf = pki("ku.example.test", ca, ca=False)[0]
    with pytest.raises(CertError, match="Signing-Only CA has a keyUsage without keyCertSign"):
        verify_chain(leaf, [root[0]], NOW, intermediates=[ca[0]])


def test_unknown_critical_extension(tree: dict[str, Pair]) -> None:
    """RFC 5280 4.2: e.g. nameConstraints, which we do not process, marked critical."""
    root, inter = tree["root"], tree["inter"]
    constrained = (
        x509.CertificateBuilder()
        .subject_name(name("Constrained CA")).issuer_name(inter[0].subject)
        .public_key(_key("Constrained CA").public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.NameConstraints([x509.DNSName("example.test")], None),
                       critical=True)
        .sign(inter[1], hashes.SHA256())
    )
    leaf = pki("nc.example.test", (constrained, _key("Constrained CA")), ca=False)[0]
    with pytest.raises(CertError, match=r"certificate CN=Constrained CA has a critical "
                                        r"extension we do not process \(2\.5\.29\.30\)"):
        verify_chain(leaf, [root[0]], NOW, intermediates=[constrained, inter[0]])


def test_path_length_constraint() -> None:
    root = pki("Strict Root", path_length=0)
    inter = pki("Strict Intermediate", root)
    leaf = pki("strict.example.test", inter, ca=False)[0]
    with pytest.raises(CertError) as e:
        verify_chain(leaf, [root[0]], NOW, intermediates=[inter[0]])
    assert str(e.value) == (
        "path length constraint of CA CN=Strict Root exceeded (pathLen 0, 1 CA certificates"
        " below it)"
    )
    # pathLen 0 still lets the root issue leaves, and pathLen 1 one intermediate
    verify_chain(pki("direct.example.test", root, ca=False)[0], [root[0]], NOW)
    root1 = pki("Root1", path_length=1)
    inter1 = pki("Inter1", root1)
    verify_chain(pki("l1.example.test", inter1, ca=False)[0], [root1[0]], NOW,
                 intermediates=[inter1[0]])
    deeper = pki("Inter2", inter1)
    with pytest.raises(CertError, match="path length constraint of CA CN=Root1 exceeded"):
        verify_chain(pki("l2.example.test", deeper, ca=False)[0], [root1[0]], NOW,
                     intermediates=[inter1[0], deeper[0]])


def test_path_longer_than_the_limit() -> None:
    chain = [pki("Deep 0")]
    for i in range(1, MAX_PATH + 2):
        chain.append(pki(f"Deep {i}", chain[-1]))
    leaf = pki("deep.example.test", chain[-1], ca=False)[0]
    with pytest.raises(CertError, match=f"certificate path longer than {MAX_PATH} CAs"):
        verify_chain(leaf, [chain[0][0]], NOW, intermediates=[c for c, _ in chain[1:]])
    leaf = pki("ok.example.test", chain[MAX_PATH - 1], ca=False)[0]
    assert len(verify_chain(leaf, [chain[0][0]], NOW,
                            intermediates=[c for c, _ in chain[1:]])) == MAX_PATH + 1


# -- revocation ---------------------------------------------------------------------------


def crls(*lists: x509.CertificateRevocationList) -> CrlSet:
    out = CrlSet()
    for i, crl in enumerate(lists):
        out.add(crl, f"test{i}.crl")
    return out


def test_revoked_leaf(tree: dict[str, Pair]) -> None:
    root, inter, leaf = tree["root"], tree["inter"], tree["leaf1"]
    other = pki("other.example.test", inter, ca=False)[0]
    revs = crls(make_crl(inter, [other, leaf[0]], now=NOW))
    with pytest.raises(CertError) as e:
        verify_chain(leaf[0], [root[0]], NOW, intermediates=[inter[0]], crls=revs)
    assert str(e.value) == (
        f"certificate CN=one.example.test is revoked (serial {leaf[0].serial_number:#x},"
        " CRL of CN=Intermediate CA)"
    )
    # a CRL of the root does not list the leaf's serial for the intermediate's leaves
    ok = crls(make_crl(inter, [other], now=NOW), make_crl(root, [leaf[0]], now=NOW))
    verify_chain(leaf[0], [root[0]], NOW, intermediates=[inter[0]], crls=ok)


def test_revoked_intermediate(tree: dict[str, Pair]) -> None:
    root, inter, issuing, leaf = (tree[k] for k in ("root", "inter", "issuing", "leaf"))
    revs = crls(make_crl(root, [inter[0]], now=NOW))
    with pytest.raises(CertError, match=r"certificate CN=Intermediate CA is revoked \(serial "
                                        r"0x[0-9a-f]+, CRL of CN=Root CA\)"):
        verify_chain(leaf[0], [root[0]], NOW, intermediates=[issuing[0], inter[0]], crls=revs)


def test_crl_signed_by_another_key_is_ignored(
    tree: dict[str, Pair], caplog: pytest.LogCaptureFixture
) -> None:
    root, inter, leaf = tree["root"], tree["inter"], tree["leaf1"]
    forged = make_crl(inter, [leaf[0]], now=NOW, signer=_key("mallory"))
    revs = crls(forged)
    with caplog.at_level("WARNING", logger="pyl2tp.ike"):
        for _ in range(2):
            verify_chain(leaf[0], [root[0]], NOW, intermediates=[inter[0]], crls=revs)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "IKE: CRL test0.crl names CN=Intermediate CA as issuer but is not signed by its key;"
        " ignored"
    ]


def test_stale_crl_still_used_and_logged_once(
    tree: dict[str, Pair], caplog: pytest.LogCaptureFixture
) -> None:
    root, inter, leaf = tree["root"], tree["inter"], tree["leaf1"]
    other = pki("stale.example.test", inter, ca=False)[0]
    revs = crls(make_crl(inter, [other], now=NOW - 30 * DAY, next_update_days=7))
    with caplog.at_level("WARNING", logger="pyl2tp.ike"):
        for _ in range(3):
            verify_chain(leaf[0], [root[0]], NOW, intermediates=[inter[0]], crls=revs)
        with pytest.raises(CertError, match="revoked"):
            verify_chain(other, [root[0]], NOW, intermediates=[inter[0]], crls=revs)
    stale = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
    assert len(stale) == 1 and "CRL of CN=Intermediate CA (test0.crl) is stale" in stale[0]


def test_load_crls(tmp_path: Path, tree: dict[str, Pair]) -> None:
    root, inter = tree["root"], tree["inter"]
    a = make_crl(root, [inter[0]], now=NOW)
    b = make_crl(inter, [tree["leaf1"][0]], now=NOW)
    both = tmp_path / "both.crl"
    both.write_bytes(a.public_bytes(serialization.Encoding.PEM)
                     + b.public_bytes(serialization.Encoding.PEM))
    der = write_crl(tmp_path, "der", b, der=True)
    assert len(load_crls([str(both)])) == 2
    assert len(load_crls([str(both), der])) == 3
    (tmp_path / "junk.crl").write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(ConfigError, match=r"crl: .*junk.crl: not a certificate revocation"):
        load_crls([str(tmp_path / "junk.crl")])
    (tmp_path / "cert.pem").write_bytes(_pem(root[0]))
    with pytest.raises(ConfigError, match=r"cert.pem: not a certificate revocation list: no X509"):
        load_crls([str(tmp_path / "cert.pem")])
    with pytest.raises(ConfigError, match=r"crl: cannot read .*missing.crl"):
        load_crls([str(tmp_path / "missing.crl")])


# -- our bundle, the peer's CERT payloads --------------------------------------------------


def test_load_credentials_bundle_and_crl(tmp_path: Path, tree: dict[str, Pair]) -> None:
    """The bundle may list the intermediate first; the certificate matching the key leads."""
    leaf, inter = tree["leaf1"], tree["inter"]
    key_path = write_pair(tmp_path, "leaf", leaf)[1]
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(_pem(inter[0]) + _pem(leaf[0]))
    ca_path = write_ca(tmp_path, "root", tree["root"])
    crl_path = write_crl(tmp_path, "root", make_crl(tree["root"], [], now=NOW))
    c = load_credentials(str(bundle), key_path, ca_path, lambda: NOW, crl=[crl_path])
    assert c.certificate == leaf[0] and c.intermediates == [inter[0]]
    assert c.cert_ders == [leaf[0].public_bytes(serialization.Encoding.DER),
                           inter[0].public_bytes(serialization.Encoding.DER)]
    assert c.crls is not None and len(c.crls) == 1
    with pytest.raises(ConfigError, match="not a certificate revocation list"):
        load_credentials(str(bundle), key_path, ca_path, crl=[key_path])


def _proof_args(leaf: Pair) -> tuple[IDPayload, bytes, bytes]:
    digest = bytes(range(32))
    peer_id = IDPayload(IDType.DER_ASN1_DN, leaf[0].subject.public_bytes(), 17, 500)
    return peer_id, digest, rsa_sign_raw(leaf[1], digest)


def der(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.DER)


def test_check_proof_finds_the_leaf_among_cert_payloads(tree: dict[str, Pair]) -> None:
    leaf, inter = tree["leaf1"], tree["inter"]
    ours = creds(pki("me.example.test", tree["root"], ca=False), [tree["root"][0]])
    peer_id, digest, sig = _proof_args(leaf)
    for order in ([leaf[0], inter[0]], [inter[0], leaf[0]]):
        assert ours.check_proof([der(c) for c in order], peer_id, digest, sig) == (
            "CN=one.example.test"
        )
    with pytest.raises(CertError, match="is not issued by a trusted CA"):
        ours.check_proof([der(leaf[0])], peer_id, digest, sig)  # intermediate missing


@pytest.mark.parametrize(
    ("payloads", "reason"),
    [
        (lambda L, i: [L, b"\x30\x82\x01\x00garbage"], "unreadable certificate (CERT payload 2)"),
        (lambda L, i: [b"", L], "unreadable certificate (CERT payload 1)"),
        (lambda L, i: [L, L[:-40]], "unreadable certificate (CERT payload 2)"),
        (lambda L, i: [L, *[i] * MAX_PEER_CERTS], "too many certificates (11, at most 10)"),
        (lambda L, i: [i], "does not match the certificate"),
    ],
)
def test_check_proof_hostile_cert_payloads(
    tree: dict[str, Pair], payloads: Callable[[bytes, bytes], list[bytes]], reason: str
) -> None:
    ours = creds(pki("me.example.test", tree["root"], ca=False), [tree["root"][0]])
    peer_id, digest, sig = _proof_args(tree["leaf1"])
    with pytest.raises(CertError) as e:
        ours.check_proof(payloads(der(tree["leaf1"][0]), der(tree["inter"][0])),
                         peer_id, digest, sig)
    assert reason in str(e.value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_check_proof_mutated_certificates_only_raise_cert_error(
    tree: dict[str, Pair], data: st.DataObject
) -> None:
    """Bit flips, truncations and junk in the peer's CERT payloads: CertError or success,
    never another exception."""
    ours = creds(pki("me.example.test", tree["root"], ca=False), [tree["root"][0]])
    peer_id, digest, sig = _proof_args(tree["leaf1"])
    payloads = [bytearray(der(tree["leaf1"][0])), bytearray(der(tree["inter"][0]))]
    for _ in range(data.draw(st.integers(0, 4))):
        which = data.draw(st.integers(0, len(payloads) - 1))
        body = payloads[which]
        action = data.draw(st.sampled_from(["flip", "cut", "junk"])) if body else "junk"
        if action == "flip":
            i = data.draw(st.integers(0, len(body) - 1))
            body[i] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del body[data.draw(st.integers(0, len(body) - 1)):]
        else:
            payloads.append(bytearray(data.draw(st.binary(max_size=64))))
    with contextlib.suppress(CertError):
        ours.check_proof([bytes(p) for p in payloads], peer_id, digest, sig)


def test_main_mode_with_intermediates_both_ways(tree: dict[str, Pair]) -> None:
    """Both sides send leaf + intermediate; each trusts the root only."""
    root, inter = tree["root"], tree["inter"]
    client_c = creds(pki("client.example.test", inter, ca=False), [root[0]])
    client_c.intermediates = [inter[0]]
    server_c = creds(pki("vpn.example.test", tree["issuing"], ca=False), [root[0]])
    server_c.intermediates = [tree["issuing"][0], inter[0]]
    net, client, server = run(cfg(client_c), cfg(server_c))
    assert server.of(IKESAEstablished)[0].peer_id == "CN=client.example.test"
    assert client.of(IKESAEstablished)[0].peer_id == "CN=vpn.example.test"
    assert server.of(ChildSAEstablished) and client.of(ChildSAEstablished)
    mm5, mm6 = net.log[4].data, net.log[5].data
    assert len(mm5) > 1500 and len(mm6) > 2000  # three and four payloads of a KB or so


def test_main_mode_revoked_client(tree: dict[str, Pair]) -> None:
    root, inter = tree["root"], tree["inter"]
    alice = pki("alice.example.test", inter, ca=False)
    client_c = creds(alice, [root[0]])
    client_c.intermediates = [inter[0]]
    server_c = creds(pki("vpn.example.test", root, ca=False), [root[0]])
    server_c.crls = crls(make_crl(inter, [alice[0]], now=NOW))
    _, client, server = run(cfg(client_c), cfg(server_c))
    (fail,) = server.of(AuthenticationFailed)
    assert fail.reason == (
        "certificate authentication failed: certificate CN=alice.example.test is revoked"
        f" (serial {alice[0].serial_number:#x}, CRL of CN=Intermediate CA)"
    )
    assert not server.of(IKESAEstablished) and not client.of(IKESAEstablished)
    assert client.of(AuthenticationFailed)  # told by AUTHENTICATION-FAILED


def test_tshark_dissects_chain_exchange(tmp_path: Path, tree: dict[str, Pair]) -> None:
    """MM5/MM6 with several CERT payloads decrypt and dissect cleanly in tshark."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    root, inter = tree["root"], tree["inter"]
    client_c = creds(pki("client.example.test", inter, ca=False), [root[0]])
    client_c.intermediates = [inter[0]]
    server_c = creds(pki("vpn.example.test", tree["issuing"], ca=False), [root[0]])
    server_c.intermediates = [tree["issuing"][0], inter[0]]
    net = Net()
    with KeyLog(tmp_path / "keys.log") as keylog:
        server = net.add(SERVER, cfg(server_c), 1)
        server.ep = IKEEndpoint(cfg(server_c), random_bytes=rng(1), keylog=keylog)
        client = net.add(CLIENT, cfg(client_c), 2)
        connect(net, client)
    assert server.of(IKESAEstablished)
    pcap = net.pcap(tmp_path / "ike.pcap")
    assert tshark_problems(pcap) == []
    res = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *tshark_options(tmp_path / "keys.log"),
         "-T", "fields", "-E", "occurrence=a",
         "-e", "isakmp.exchangetype", "-e", "isakmp.cert.encoding", "-e", "isakmp.certreq.type",
         "-e", "_ws.malformed"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    mm = [r for r in rows if r[0] == "2"]
    assert len(mm) == 6
    assert [r[1] for r in mm] == ["", "", "", "", "4,4", "4,4,4"]  # MM5, MM6: leaf + CAs
    assert [r[2] for r in mm] == ["", "", "4", "4", "", ""]  # CERTREQ in MM3, MM4
    assert not any(r[3] for r in rows)
