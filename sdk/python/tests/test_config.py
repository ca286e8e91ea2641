"""Where the client finds the gateway and its token (no stack needed)."""

from __future__ import annotations

import pytest

import moat


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GATEWAY_HOST",
        "GATEWAY_PORT",
        "MOAT_TOKEN",
        "MOAT_TOKEN_FILE",
        "MOAT_TLS_CA",
        "MOAT_TLS_CERT",
        "MOAT_TLS_KEY",
        "MOAT_TLS_SERVER_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    with moat.GatewayClient() as client:
        assert (client.settings.host, client.settings.port, client.settings.token) == ("localhost", 50051, None)
        assert client.settings.timeout == 10.0


def test_environment_then_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_HOST", "gateway.internal")
    monkeypatch.setenv("GATEWAY_PORT", "6000")
    monkeypatch.setenv("MOAT_TOKEN", "from-env")
    with moat.GatewayClient() as client:
        assert client.settings.target == "gateway.internal:6000"
        assert client.settings.token == "from-env"
    with moat.GatewayClient("other", 7000, "given") as client:
        assert client.settings.target == "other:7000" and client.settings.token == "given"
    with moat.GatewayClient("::1", 7000) as client:
        assert client.settings.target == "[::1]:7000"


def test_token_file_skips_comments_and_blank_lines(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "token"
    path.write_text("# the strategy's token\n\n  secret-token-123  \nsecond-line\n")
    monkeypatch.setenv("MOAT_TOKEN_FILE", str(path))
    with moat.GatewayClient() as client:
        assert client.settings.token == "secret-token-123"
    monkeypatch.setenv("MOAT_TOKEN", "wins")
    with moat.GatewayClient() as client:
        assert client.settings.token == "wins"


def test_bad_settings_name_what_is_wrong(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "http")
    with pytest.raises(moat.MoatError, match="GATEWAY_PORT 'http' is not a port number"):
        moat.GatewayClient()
    monkeypatch.delenv("GATEWAY_PORT")
    with pytest.raises(moat.MoatError, match="port 70000 is out of range"):
        moat.GatewayClient(port=70000)
    empty = tmp_path / "empty"
    empty.write_text("# nothing here\n")
    monkeypatch.setenv("MOAT_TOKEN_FILE", str(empty))
    with pytest.raises(moat.MoatError, match="holds no token"):
        moat.GatewayClient()
    monkeypatch.setenv("MOAT_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(moat.MoatError, match="No such file"):
        moat.GatewayClient()


def test_error_details_are_parsed_from_the_gateways_messages() -> None:
    limited = moat.RateLimited("Rate limited, retry after 0.25s")
    assert limited.retry_after == 0.25
    assert moat.RateLimited("too many failed authentication attempts from ::1; retry after 12.00s").retry_after == 12.0
    assert moat.RateLimited("something else").retry_after is None
    conflict = moat.VersionConflict(
        "version conflict for strategy 'a': expected version 3, current version is 7"
    )
    assert conflict.current_version == 7 and str(conflict).startswith("version conflict")


def test_tls_is_on_when_any_tls_setting_is_given(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with moat.GatewayClient() as client:
        assert client.settings.tls is None, "plaintext unless told"
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("MOAT_TLS_CA", str(ca))
    with moat.GatewayClient() as client:
        assert client.settings.tls is not None and client.settings.tls.ca == str(ca)
        assert client.settings.tls.cert is None
    with moat.GatewayClient(tls=False) as client:
        assert client.settings.tls is None, "an explicit tls=False wins"
    monkeypatch.delenv("MOAT_TLS_CA")
    with moat.GatewayClient(tls=True) as client:
        assert client.settings.tls is not None and client.settings.tls.ca is None, "the system's roots"


def test_bad_tls_settings_name_what_is_wrong(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = tmp_path / "dev.pem"
    cert.write_text("")
    with pytest.raises(moat.MoatError, match="needs both cert and key"):
        moat.GatewayClient(tls_cert=str(cert))
    monkeypatch.setenv("MOAT_TLS_CA", str(tmp_path / "missing-ca.pem"))
    with pytest.raises(moat.MoatError, match="TLS CA file .*missing-ca.pem does not exist"):
        moat.GatewayClient()
