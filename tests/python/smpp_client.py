"""Binds to Switchboard's SMPP server with smpplib, an independent SMPP client, as a
transceiver; sends a GSM-7 text, a UCS-2 text and a text of three concatenated parts (each
asking for a receipt); reads the receipts; and prints one JSON line:
{"sent": {name: [message ids of its parts]}, "receipts": {message id: stat}}.

Usage: smpp_client.py HOST PORT SYSTEM_ID PASSWORD SOURCE DESTINATION
"""

import json
import re
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.gsm

host, port, system_id, password, source, destination = sys.argv[1:7]
MESSAGES = [
    ("gsm7", "Hello from smpplib"),
    ("ucs2", "Grüße aus Python ☺"),
    ("long", "Long message. " * 20),
]

sent = {name: [] for name, _ in MESSAGES}
receipts = {}
sending = [None]


def on_sent(pdu):
    sent[sending[0]].append(pdu.message_id.decode())


def on_received(pdu):
    text = pdu.short_message.decode("ascii", "replace")
    stat = re.search(r"stat:(\w+)", text)
    ident = pdu.receipted_message_id.decode() if pdu.receipted_message_id else None
    if ident and stat:
        receipts[ident] = stat.group(1)
    return smpplib.consts.SMPP_ESME_ROK


client = smpplib.client.Client(host, int(port), timeout=20, allow_unknown_opt_params=True)
client.set_message_sent_handler(on_sent)
client.set_message_received_handler(on_received)
client.connect()
client.bind_transceiver(system_id=system_id, password=password)

for name, text in MESSAGES:
    sending[0] = name
    parts, coding, esm_class = smpplib.gsm.make_parts(text)
    for part in parts:
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_INTL,
            source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            source_addr=source,
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr=destination,
            short_message=part,
            data_coding=coding,
            esm_class=esm_class,
            registered_delivery=True,
        )
    # Every part is answered once the whole message is stored.
    while len(sent[name]) < len(parts):
        client.read_once()

wanted = {ids[0] for ids in sent.values() if ids}
deadline = time.monotonic() + 20
while not wanted <= set(receipts) and time.monotonic() < deadline:
    client.read_once()

client.unbind()
client.disconnect()
print(json.dumps({"sent": sent, "receipts": receipts}))
