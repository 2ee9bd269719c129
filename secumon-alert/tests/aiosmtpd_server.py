"""A real SMTP server for the e-mail channel's tests: aiosmtpd on loopback.

Usage: aiosmtpd_server.py PORT starttls|tls CERT KEY OUTDIR [login-only]

Accepts AUTH PLAIN and LOGIN for alerts / s3cret only (over TLS), refuses any recipient
at nobody@..., and writes each message to OUTDIR as the raw bytes received (.eml) and as
Python's own reading of it (.json: envelope, headers decoded, text and HTML parts).
Prints READY once it accepts connections; runs until killed.
"""

import email
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, mode, cert, key, out = sys.argv[1:6]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alerts", b"s3cret")
    with open(os.path.join(out, "auth.log"), "a") as log:
        log.write(f"{mechanism} {'accepted' if ok else 'refused'}\n")
    # handled=False: aiosmtpd answers (235, or 535 on a refusal) itself.
    return AuthResult(success=ok, handled=False)


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return f"550 5.1.1 <{address}>: recipient refused"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(out, f"message-{time.time_ns()}")
        with open(name + ".eml", "wb") as raw:
            raw.write(envelope.original_content)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}
        reading = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "subject": str(message["subject"]),
            "from": str(message["from"]),
            "to": str(message["to"]),
            "content_type": message.get_content_type(),
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
        }
        with open(name + ".json.tmp", "w") as parsed:
            json.dump(reading, parsed)
        os.rename(name + ".json.tmp", name + ".json")
        return "250 2.0.0 queued"


common = dict(hostname="127.0.0.1", port=int(port), authenticator=authenticator)
if sys.argv[6:] == ["login-only"]:
    # Offer LOGIN alone, so the client must use it rather than PLAIN.
    common["auth_exclude_mechanism"] = ["PLAIN"]
if mode == "starttls":
    # STARTTLS is required, and AUTH only after it (aiosmtpd's default, stated here).
    controller = Controller(Handler(), tls_context=context, require_starttls=True, auth_require_tls=True, **common)
else:
    controller = Controller(Handler(), ssl_context=context, auth_require_tls=False, **common)
controller.start()
print("READY", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
