#!/usr/bin/python3
"""A real SMTP server for the tests (Debian's python3-aiosmtpd): it accepts
every message on loopback and writes each one, parsed by Python's own
`email` package, as a JSON file {"to", "from", "subject", "text", "html",
"raw"} into a directory the tests read.

    smtp-sink.py PORT DIRECTORY

It prints "ready" once it listens, and runs until it is killed.
"""
import asyncio
import email
import email.policy
import json
import os
import sys
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        record = {
            "to": list(envelope.rcpt_tos),
            "from": envelope.mail_from,
            "subject": str(message.get("subject", "")),
            "text": text.get_content() if text is not None else "",
            "html": html.get_content() if html is not None else "",
            "raw": envelope.original_content.decode("utf-8", "replace"),
        }
        name = f"{uuid.uuid4().hex}.json"
        partial = os.path.join(self.directory, f".{name}")
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(partial, os.path.join(self.directory, name))
        return "250 OK"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
