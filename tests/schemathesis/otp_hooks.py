"""Schemathesis hooks of `cargo xtask schemathesis`: every case runs signed in.

Each case gets a login of its own (a fresh `schemathesis-…@example.com` address, the magic
code of `OTP_AUTH_DISABLE_LOCAL_AUTH`, narrowed by `OTP_AUTH_MAGIC_OTP_EMAILS` to those
addresses), so no case is hurt by another one's `/logout-all`, and no address reaches a limit.

Positive cases also get that login's refresh token (cookie or body, per the operation), and
the first and then every other positive case (per phase) of an operation that needs something only the server can issue
gets it, so the success answers are checked too:

- `DELETE /sessions/{id}`: another session of the same user;
- the admin router (signed in as `APP_ADMINS`' address): an address of its own in the path
  or the `email` query;
- `/verify-otp`, `/verify-reauthentication`, `/verify-email-change`: a code just requested
  for a magic address (for the user, for the new address), with its login flow as
  `flow_id` when the case has one;
- `/verify-link`: the link of a code mail just sent to an ordinary address, read from the
  console mailer's log line in the app's log (`OTP_SCHEMATHESIS_APP_LOG`), with its flow.

The other positive cases keep their generated code or link, which the server answers with
the documented 400; negative cases keep everything Schemathesis made.
"""

import http.cookies
import json
import os
import re
import secrets
import time
import urllib.parse
import urllib.request

import schemathesis

BASE = os.environ["OTP_SCHEMATHESIS_BASE"]
MOUNT = os.environ.get("OTP_SCHEMATHESIS_MOUNT", "/auth")
COOKIE = os.environ.get("OTP_SCHEMATHESIS_COOKIE", "refresh_token")
MAGIC_CODE = os.environ.get("OTP_SCHEMATHESIS_MAGIC_CODE", "000000")
APP_LOG = os.environ.get("OTP_SCHEMATHESIS_APP_LOG")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# The administrator (`APP_ADMINS` of the runs): the admin router's cases sign in as it.
ADMIN = os.environ.get("OTP_SCHEMATHESIS_ADMIN", "schemathesis-admin@example.com")


def magic_address(kind="user"):
    return f"schemathesis-{kind}-{secrets.token_hex(8)}@example.com"


def link_token(address):
    """The token of the sign-in link the console mailer logged for `address`."""
    pattern = re.compile(rf"sign-in link for {re.escape(address)}: (\S+)")
    for _ in range(50):
        with open(APP_LOG, encoding="utf-8", errors="replace") as log:
            found = pattern.findall(ANSI.sub("", log.read()))
        if found:
            query = urllib.parse.urlparse(found[-1]).query
            return urllib.parse.parse_qs(query)["token"][0]
        time.sleep(0.1)
    raise RuntimeError(f"no sign-in link for {address} in {APP_LOG}")


def call(method, path, body=None, token=None):
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(BASE + MOUNT + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        cookies = http.cookies.SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        return json.load(response), cookies


def bind(case, sent):
    """A generated `flow_id` becomes the flow the code was just sent for (any other flow is
    the documented 400); without one the verification stays unbound."""
    if "flow_id" in case.body:
        case.body["flow_id"] = sent["flow_id"]


def is_positive(case):
    return case.meta is None or case.meta.generation.mode.is_positive


@schemathesis.auth(refresh_interval=None)
class MagicCodeLogin:
    """A new login for every case."""

    def __init__(self):
        self.positive_cases = {}

    def get(self, case, ctx):
        email = ADMIN if case.operation.path.startswith("/admin") else magic_address()
        call("POST", "/request-otp", {"email": email})
        body, cookies = call("POST", "/verify-otp", {"email": email, "otp": MAGIC_CODE})
        login = {"access": body["access_token"], "refresh": body.get("refresh_token")}
        if COOKIE in cookies:
            login["refresh"] = cookies[COOKIE].value
        if case.path_parameters is not None and "id" in case.path_parameters:
            # A second login of the same address: a session to end that is not this one.
            call("POST", "/request-otp", {"email": email})
            other, _ = call("POST", "/verify-otp", {"email": email, "otp": MAGIC_CODE})
            listed, _ = call("GET", "/sessions", token=other["access_token"])
            login["other_session"] = next(s["id"] for s in listed["sessions"] if s["current"])
        return login

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data['access']}"
        if not is_positive(case) or data["refresh"] is None:
            return
        parameters = case.operation.definition.raw.get("parameters", [])
        if any(p.get("in") == "cookie" and p.get("name") == COOKIE for p in parameters):
            case.cookies = case.cookies or {}
            case.cookies[COOKIE] = data["refresh"]
        if isinstance(case.body, dict) and "refresh_token" in case.body:
            case.body["refresh_token"] = data["refresh"]
            # One place only (the `both` transport refuses a token in both).
            if case.cookies:
                case.cookies.pop(COOKIE, None)
        # Counted per operation and phase: the first positive case of each gets the real
        # thing, so every phase sees the success answer.
        key = (case.operation.label, case.meta.phase.name if case.meta else None)
        self.positive_cases[key] = self.positive_cases.get(key, 0) + 1
        if self.positive_cases[key] % 2 == 0:
            return
        token = data["access"]
        path = case.operation.path.removeprefix(MOUNT)
        if "other_session" in data:
            case.path_parameters["id"] = data["other_session"]
        elif path.startswith("/admin"):
            # An address of its own (never the administrator's: a lock would end its logins).
            target = magic_address("target")
            if case.path_parameters is not None and "email" in case.path_parameters:
                case.path_parameters["email"] = target
            if path == "/admin/sessions":
                case.query = {"email": target}
        elif not isinstance(case.body, dict):
            return
        elif path == "/verify-otp":
            email = magic_address()
            sent, _ = call("POST", "/request-otp", {"email": email})
            case.body.update(email=email, otp=MAGIC_CODE)
            bind(case, sent)
        elif path == "/verify-reauthentication":
            call("POST", "/reauthenticate", {}, token=token)
            case.body["otp"] = MAGIC_CODE
        elif path == "/verify-email-change":
            new_email = magic_address("new")
            call("POST", "/change-email", {"new_email": new_email}, token=token)
            case.body.update(new_email=new_email, otp=MAGIC_CODE)
        elif path == "/verify-link" and APP_LOG:
            email = f"link-{secrets.token_hex(8)}@example.com"
            sent, _ = call("POST", "/request-otp", {"email": email})
            case.body["token"] = link_token(email)
            bind(case, sent)
