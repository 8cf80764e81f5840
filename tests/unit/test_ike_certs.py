"""IKEv1 Main Mode with RSA signatures and X.509 certificates (RFC 2409 5.1), in memory."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from tests.unit.test_ike_mainmode import CLIENT, SERVER, Host, Net, connect

from pyl2tp.errors import ConfigError
from pyl2tp.ike.certs import (
    CertError,
    Credentials,
    load_credentials,
    rsa_sign_raw,
    rsa_verify_raw,
    verify_chain,
)
from pyl2tp.ike.endpoint import IKEConfig
from pyl2tp.ike.events import AuthenticationFailed, ChildSAEstablished, IKESAEstablished
from pyl2tp.ike.proposals import AuthMethod, Policy
from pyl2tp.wire.isakmp import CertRequestPayload, decode_message, decode_payloads

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
    with pytest.raises(CertError, match="does not verify"):
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
    # MM3 and MM4 ask for an X.509 signature certificate
    for sent in net.log[2:4]:
        header, body = decode_message(sent.data)
        assert CertRequestPayload(4) in decode_payloads(header.next_payload, body)


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
