"""A plain SMTP server on loopback for the scheduled reports' test: aiosmtpd.

Usage: report_smtp.py PORT OUTDIR

Writes each message to OUTDIR as Python's own reading of it (message-N.json: envelope,
subject, text part, attachments' names and types) and each attachment's bytes beside it
(message-N-FILENAME). Prints READY once it accepts connections; runs until killed.
"""

import email
import email.policy
import json
import os
import sys
import time

from aiosmtpd.controller import Controller

port, out = sys.argv[1:3]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(out, f"message-{time.time_ns()}")
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        attachments = []
        text = None
        for part in message.walk():
            if part.is_multipart():
                continue
            filename = part.get_filename()
            if filename:
                with open(f"{name}-{filename}", "wb") as f:
                    f.write(part.get_payload(decode=True))
                attachments.append({"filename": filename, "content_type": part.get_content_type()})
            elif part.get_content_type() == "text/plain":
                text = part.get_content()
        reading = {
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "text": text,
            "attachments": attachments,
        }
        with open(name + ".json.tmp", "w") as parsed:
            json.dump(reading, parsed)
        os.rename(name + ".json.tmp", name + ".json")
        return "250 2.0.0 queued"


controller = Controller(Handler(), hostname="127.0.0.1", port=int(port))
controller.start()
print("READY", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
