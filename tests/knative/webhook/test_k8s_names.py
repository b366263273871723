"""Kubernetes' name checks as Knative's webhook calls them: k8s.io/apimachinery v0.35.7
pkg/util/validation/validation_test.go and pkg/api/validate/content/kube_test.go (the values each upstream test
takes as good or bad), plus the exact messages of validation.go and content/*.go that Knative's errors embed.
Also Go's strconv rules (knative/webhook/strconv.py) where the autoscaling checks depend on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from edgeinfer.knative.webhook import k8s_names as k
from edgeinfer.knative.webhook.autoscaling import round_duration, truncate_duration
from edgeinfer.knative.webhook.go import SECOND
from edgeinfer.knative.webhook.strconv import NumError, NumErrorKind, atoi, parse_float, parse_int

Check = Callable[[str], list[str]]


def _values(test: str, check: Check, good: list[str], bad: list[str]) -> list[Any]:
    return [pytest.param(check, v, True, id=f"{test}/good {v!r}") for v in good] + [
        pytest.param(check, v, False, id=f"{test}/bad {v!r}") for v in bad
    ]


VALIDITY = [
    *_values(
        "TestIsDNS1123Label",
        k.is_dns1123_label,
        ["a", "ab", "a-1", "a--1--2--b", "0", "1-a", "a" * 63],
        ["", "A", "aBc", "-", "a-", "-a", "a_b", "a.b", "a b", "a\n", "a" * 64],
    ),
    *_values(
        "TestIsDNS1123Subdomain",
        k.is_dns1123_subdomain,
        ["a", "a.a", "a--1--2--b.1", "0.1", "a.b.c.d.e", "a" * 253],
        ["", "A", "a.", ".a", "a..b", "A.a", "a@b", "a:b", "a" * 254],
    ),
    *_values(
        "TestIsDNS1035Label",
        k.is_dns1035_label,
        ["a", "ab", "a-1", "a--1--2--b", "a" * 63],
        ["0", "1a", "", "A", "a-", "-a", "a_b", "a.b", "a b", "a" * 64],
    ),
    *_values(
        "TestIsValidPortName",
        k.is_valid_port_name,
        ["telnet", "re-mail-ck", "pop3", "a", "a-1", "1-a", "1-a-2-b-3"],
        ["longerthan15characters", "", "a" * 16, "12345", "1-2-3-4", "-begin", "end-", "two--hyphens", "whois++"],
    ),
    *_values(
        "TestIsQualifiedName",
        k.is_qualified_name,
        [
            "simple",
            "1234",
            "now-with-dashes/now-with-dashes",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "a" * 63,
            "a" * 253 + "/" + "b" * 63,
        ],
        [
            "nospecialchars%^=@",
            "cantendwithadash-",
            "only/one/slash",
            "Example.com/abc",
            "example_com/abc",
            "example.com/",
            "/simple",
            "a" * 64,
            "a" * 254 + "/abc",
        ],
    ),
    *_values(
        "TestIsValidLabelValue",
        k.is_valid_label_value,
        ["simple", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, ""],
        ["nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad", "ends.with.dot.", "a" * 64],
    ),
    *_values(
        "TestIsHTTPHeaderName",
        k.is_http_header_name,
        ["Accept-Encoding", "X-Forwarded-For", "-a", "a--1--2--b", "--123-ABC"],
        ["Host:", "X-@Home", "", "_", "a.b", "a b", "#a#", "{"],
    ),
    *_values(
        "TestIsValidPercent",
        k.is_valid_percent,
        ["0%", "00000%", "01%", "100%", "101%"],
        ["", "0", "0.0%", "hundred", " 1%", "1% ", "-1%", "+1%"],
    ),
    *_values(
        "TestIsConfigMapKey",
        k.is_config_map_key,
        ["a", "good-good", "still.good", ".so.is.this", "THIS_IS_GOOD", "so_is_this_17"],
        [".", "..", "..bad", "b*d", "bad!&bad"],
    ),
    *_values(
        "TestIsRelaxedEnvVarName",
        k.is_relaxed_env_var_name,
        ["-", ":", "+a", "a..", "a ", "0 a", "@a"],
        ["", "=", "a=b", chr(1) + "abc", chr(130) + "abc", "Ç ç"],
    ),
    *_values("IsCIdentifier", k.is_c_identifier, ["my_name", "MY_NAME", "MyName", "_x1"], ["", "1a", "a-b", "a.b"]),
    *_values("IsEnvVarName", k.is_env_var_name, ["my.env-name", "MY_ENV.NAME", "MyEnvName1"], ["1a", "a=b", ".", ".."]),
]


@pytest.mark.parametrize(("check", "value", "valid"), VALIDITY)
def test_validity(check: Check, value: str, valid: bool) -> None:
    assert (check(value) == []) is valid


@pytest.mark.parametrize(("port", "valid"), [(1, True), (65535, True), (0, False), (-1, False), (65536, False)])
def test_is_valid_port_num(port: int, valid: bool) -> None:
    assert k.is_valid_port_num(port) == ([] if valid else ["must be between 1 and 65535, inclusive"])


MESSAGES = [
    pytest.param(
        k.is_dns1123_label,
        "a.b",
        ["must not contain dots"],
        id="IsDNS1123Label/a valid subdomain but not a label",
    ),
    pytest.param(
        k.is_dns1123_label,
        "A" * 64,
        [
            "must be no more than 63 characters",
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
            "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ],
        id="IsDNS1123Label/too long and not lowercase",
    ),
    pytest.param(
        k.is_dns1123_subdomain,
        "Example.com",
        [
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ],
        id="IsDNS1123Subdomain/uppercase",
    ),
    pytest.param(
        k.is_dns1035_label,
        "1a",
        [
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
            "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
            "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ],
        id="IsDNS1035Label/starts with a digit",
    ),
    pytest.param(
        k.is_qualified_name,
        "a/b/c",
        [
            "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
            "'/' (e.g. 'example.com/MyName')"
        ],
        id="IsQualifiedName/two slashes",
    ),
    pytest.param(
        k.is_qualified_name,
        "/" + "b" * 64,
        ["prefix part must be non-empty", "name part must be no more than 63 bytes"],
        id="IsQualifiedName/empty prefix, long name (content's bytes message)",
    ),
    pytest.param(
        k.is_qualified_name,
        "Ex.com/",
        [
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "name part must be non-empty",
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ],
        id="IsQualifiedName/bad prefix, empty name",
    ),
    pytest.param(
        k.is_valid_label_value,
        "-" * 64,
        [
            "must be no more than 63 bytes",
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
            "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ],
        id="IsValidLabelValue/too long and dashes",
    ),
    pytest.param(
        k.is_c_identifier,
        "1a",
        [
            "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric "
            "characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for validation is "
            "'[A-Za-z_][A-Za-z0-9_]*')"
        ],
        id="IsCIdentifier/starts with a digit",
    ),
    pytest.param(
        k.is_env_var_name,
        "..",
        ["must not be '..'"],
        id="IsEnvVarName/dot dot",
    ),
    pytest.param(
        k.is_env_var_name,
        "1a",
        [
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and "
            "must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for "
            "validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
        ],
        id="IsEnvVarName/starts with a digit",
    ),
    pytest.param(
        k.is_config_map_key,
        "..b*d",
        [
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
            "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "must not start with '..'",
        ],
        id="IsConfigMapKey/bad and dot-dot",
    ),
    pytest.param(
        k.is_valid_port_name,
        "-a--",
        ["must not contain consecutive hyphens", "must not begin or end with a hyphen"],
        id="IsValidPortName/hyphens",
    ),
    pytest.param(
        k.is_valid_port_name,
        "1234567890123456",
        [
            "must be no more than 15 characters",
            "must contain at least one letter (a-z)",
        ],
        id="IsValidPortName/long and no letter",
    ),
    pytest.param(
        k.is_http_header_name,
        "a b",
        [
            "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used "
            "for validation is '[-A-Za-z0-9]+')"
        ],
        id="IsHTTPHeaderName/space",
    ),
]


@pytest.mark.parametrize(("check", "value", "want"), MESSAGES)
def test_messages(check: Check, value: str, want: list[str]) -> None:
    assert check(value) == want


@pytest.mark.parametrize(
    ("name", "prefix", "valid"),
    [
        pytest.param("some-name-", True, True, id="NameIsDNS1035Label/generateName may end with a dash"),
        pytest.param("some-name-", False, False, id="NameIsDNS1035Label/a name may not"),
        pytest.param("a-", True, True, id="NameIsDNS1035Label/maskTrailingDash drops two bytes: a- is a"),
        pytest.param("-", True, False, id="NameIsDNS1035Label/a lone dash is kept"),
        pytest.param("é-", True, False, id="NameIsDNS1035Label/a cut multi-byte character stays invalid"),
    ],
)
def test_name_is_dns1035_label(name: str, prefix: bool, valid: bool) -> None:
    assert (k.name_is_dns1035_label(name, prefix) == []) is valid


# --- strconv and time.Duration rounding as Go does them --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bits", "want"),
    [
        ("2147483647", 32, 2147483647),
        ("-2147483648", 32, -2147483648),
        ("+5", 32, 5),
        ("2147483648", 32, NumErrorKind.RANGE),
        ("-2147483649", 32, NumErrorKind.RANGE),
        ("99999999999x", 32, NumErrorKind.RANGE),  # the overflow is met before the bad digit
        ("x9", 32, NumErrorKind.SYNTAX),
        ("", 32, NumErrorKind.SYNTAX),
        ("-", 32, NumErrorKind.SYNTAX),
        ("1_0", 32, NumErrorKind.SYNTAX),
        (" 1", 32, NumErrorKind.SYNTAX),
        ("9223372036854775808", 64, NumErrorKind.RANGE),
    ],
)
def test_parse_int(text: str, bits: int, want: int | NumErrorKind) -> None:
    if isinstance(want, NumErrorKind):
        with pytest.raises(NumError) as raised:
            parse_int(text, bits)
        assert raised.value.kind is want
    else:
        assert parse_int(text, bits) == want


def test_atoi_error_text() -> None:
    with pytest.raises(NumError, match=r'^strconv.Atoi: parsing "x": invalid syntax$'):
        atoi("x")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1", 1.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("1_000", 1000.0),
        ("1_23.50_0_0e+1_2", 1.235e14),
        ("0x1p4", 16.0),
        ("-0x1.8p1", -3.0),
        ("+Infinity", float("inf")),
        ("1e-400", 0.0),
        ("1e400", NumErrorKind.RANGE),
        ("0x1", NumErrorKind.SYNTAX),
        ("1__0", NumErrorKind.SYNTAX),
        ("_1", NumErrorKind.SYNTAX),
        ("-nan", NumErrorKind.SYNTAX),
        (" 1", NumErrorKind.SYNTAX),
        ("1e", NumErrorKind.SYNTAX),
        (".", NumErrorKind.SYNTAX),
        ("100}", NumErrorKind.SYNTAX),
    ],
)
def test_parse_float(text: str, want: float | NumErrorKind) -> None:
    if isinstance(want, NumErrorKind):
        with pytest.raises(NumError) as raised:
            parse_float(text)
        assert raised.value.kind is want
    else:
        assert parse_float(text) == want


def test_duration_round_and_truncate() -> None:
    ms = SECOND // 1000
    assert round_duration(1500 * ms, SECOND) == 2 * SECOND
    assert round_duration(-1500 * ms, SECOND) == -2 * SECOND  # halves away from zero
    assert round_duration(1499 * ms, SECOND) == SECOND
    assert truncate_duration(-1500 * ms, SECOND) == -SECOND
    assert round_duration(2**63 - 1, SECOND) == 2**63 - 1  # saturates, as Go's does
