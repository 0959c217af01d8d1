"""Where workloads and clients reach the control plane: never a wildcard address."""

from cumulo.app import ServerConfig, is_loopback


def test_a_wildcard_bind_is_reached_over_loopback():
    assert ServerConfig(home=None, database_url="", host="0.0.0.0", port=8200).url == "http://127.0.0.1:8200"
    assert ServerConfig(home=None, database_url="", host="::", port=1).url == "http://127.0.0.1:1"
    assert ServerConfig(home=None, database_url="", host="10.1.2.3", port=1, tls_cert="c").url == "https://10.1.2.3:1"
    assert ServerConfig(home=None, database_url="", host="::1", port=1).url == "http://[::1]:1"


def test_only_loopback_addresses_count_as_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.3") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")
