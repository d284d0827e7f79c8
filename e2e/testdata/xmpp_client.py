#!/usr/bin/python3
"""A slixmpp client that Parley's end-to-end tests drive line by line.

Run by the Go tests (e2e/xmpp_test.go) as

    /usr/bin/python3 e2e/testdata/xmpp_client.py --jid alice@example.lan \
        --password PW --host 127.0.88.1 --port 5222 --mode starttls

It logs in (STARTTLS, or direct TLS with --mode direct; certificates are
not verified, the appliance's are self-signed; with --mech only that SASL
mechanism is tried), fetches the roster and sends initial presence unless
told not to, then reads commands from standard input, one JSON object a
line, e.g.

    {"id": "1", "op": "send", "to": "bob@example.lan", "body": "hé"}

and writes what happens to standard output, one JSON object a line:
events as they arrive ({"ev": "message", ...}, {"ev": "presence", ...},
{"ev": "stream_error", ...}) and one {"ev": "reply", "id": ...} per command
(with "error": condition when the server answered with an error).

It exits when the connection ends ({"ev": "disconnected"}), when standard
input closes (after a clean disconnect), or after --timeout seconds
({"ev": "timeout"}, status 3) so that a test never waits forever.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import ssl
import sys

import slixmpp

from jsondriver import Lifecycle, emit, read_commands
from slixmpp.xmlstream import ET

NS_AVATAR = "{vcard-temp:x:update}"
NS_DELAY = "{urn:xmpp:delay}"
NS_PRIVATE = "{jabber:iq:private}"


class Client(Lifecycle, slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password, sasl_mech=args.mech)
        self.args = args
        self.done = asyncio.get_event_loop().create_future()
        self.reading = False  # commands are read once the session is up
        self.tasks = set()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        # The test decides about subscriptions, not the library.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.whitespace_keepalive = False
        for p in ("xep_0030", "xep_0054", "xep_0199", "xep_0092", "xep_0202", "xep_0012"):
            self.register_plugin(p)
        self.add_event_handler("session_start", self.on_session)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("failed_all_auth", lambda _: emit("failed_all_auth"))
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message_error)
        self.add_event_handler("presence", self.on_presence)

    # --- events -----------------------------------------------------------

    async def on_session(self, _):
        roster = None
        if not self.args.no_roster:
            iq = await self.get_roster()
            roster = roster_items(iq)
        if not self.args.no_presence:
            if self.args.priority is not None:
                self.send_presence(ppriority=self.args.priority)
            else:
                self.send_presence()
        cert = ""
        ssl_obj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_obj is not None:
            der = ssl_obj.getpeercert(True)
            cert = hashlib.sha256(der).hexdigest()
        emit("session", jid=str(self.boundjid), cert=cert,
             tls=ssl_obj.version() if ssl_obj else "", items=roster)
        if not self.reading:
            self.reading = True
            # Tasks are kept referenced: asyncio holds them only weakly.
            self.tasks.add(asyncio.ensure_future(read_commands(self)))

    def on_failed_auth(self, stanza):
        emit("failed_auth", condition=stanza["condition"])

    def on_message(self, msg):
        delay = msg.xml.find(NS_DELAY + "delay")
        emit("message", **{
            "from": str(msg["from"]), "to": str(msg["to"]), "type": msg["type"],
            "body": msg["body"], "id": msg["id"],
            "delay": delay.get("stamp", "") if delay is not None else None,
            "delay_from": delay.get("from", "") if delay is not None else None,
        })

    def on_message_error(self, msg):
        emit("message_error", **{"from": str(msg["from"]), "body": msg["body"],
                                 "condition": msg["error"]["condition"],
                                 "text": msg["error"]["text"]})

    def on_presence(self, pres):
        x = pres.xml.find(NS_AVATAR + "x")
        photo = None
        if x is not None:
            ph = x.find(NS_AVATAR + "photo")
            photo = (ph.text or "") if ph is not None else None
        emit("presence", **{"from": str(pres["from"]), "to": str(pres["to"]),
                            "type": pres["type"], "status": pres["status"], "photo": photo})

    # --- commands ---------------------------------------------------------

    async def run(self, op, c):
        to = c.get("to") or None
        if op == "send":
            self.send_message(mto=to, mbody=c.get("body"), mtype=c.get("type") or "chat")
            return {}
        if op == "presence":
            kw = {}
            if c.get("priority") is not None:
                kw["ppriority"] = c["priority"]
            if c.get("status"):
                kw["pstatus"] = c["status"]
            if c.get("type"):
                kw["ptype"] = c["type"]
            if to:
                kw["pto"] = to
            self.send_presence(**kw)
            return {}
        if op in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            self.send_presence(pto=to, ptype=op)
            return {}
        if op == "roster":
            iq = self.Iq()
            iq["type"] = "get"
            iq.enable("roster")
            res = await iq.send(timeout=10)
            return {"items": roster_items(res), "ver": res["roster"]["ver"]}
        if op == "ping":
            await self.plugin["xep_0199"].ping(jid=to, timeout=10)
            return {}
        if op == "disco_info":
            res = await self.plugin["xep_0030"].get_info(jid=to, local=False, timeout=10)
            info = res["disco_info"]
            return {"identities": [list(i[:3]) for i in info["identities"]],
                    "features": sorted(info["features"])}
        if op == "disco_items":
            res = await self.plugin["xep_0030"].get_items(jid=to, local=False, timeout=10)
            return {"jids": sorted(str(i[0]) for i in res["disco_items"]["items"])}
        if op == "version":
            res = await self.plugin["xep_0092"].get_version(to, timeout=10)
            return {"name": res["software_version"]["name"],
                    "version": res["software_version"]["version"]}
        if op == "time":
            res = await self.plugin["xep_0202"].get_entity_time(to, timeout=10)
            t = res.xml.find("{urn:xmpp:time}time")
            return {"utc": t.findtext("{urn:xmpp:time}utc"), "tzo": t.findtext("{urn:xmpp:time}tzo")}
        if op == "last":
            res = await self.plugin["xep_0012"].get_last_activity(to, timeout=10)
            return {"seconds": res["last_activity"]["seconds"], "status": res["last_activity"]["status"]}
        if op == "vcard_set":
            v = self.plugin["xep_0054"].make_vcard()
            v["FN"] = c.get("fn", "")
            v["NICKNAME"] = c.get("nickname", "")
            if c.get("photo"):
                v["PHOTO"]["TYPE"] = c.get("photo_type", "image/png")
                v["PHOTO"]["BINVAL"] = base64.b64decode(c["photo"])
            await self.plugin["xep_0054"].publish_vcard(v, timeout=10)
            return {}
        if op == "vcard_get":
            res = await self.plugin["xep_0054"].get_vcard(to, local=False, timeout=10)
            v = res["vcard_temp"]
            photo = v["PHOTO"]["BINVAL"]
            return {"fn": v["FN"], "nickname": v["NICKNAME"], "photo_type": v["PHOTO"]["TYPE"],
                    "photo_sha1": hashlib.sha1(photo).hexdigest() if photo else ""}
        if op in ("private_set", "private_get"):
            iq = self.Iq()
            iq["type"] = "set" if op == "private_set" else "get"
            q = ET.Element(NS_PRIVATE + "query")
            item = ET.SubElement(q, "{%s}%s" % (c["ns"], c["name"]))
            if op == "private_set":
                item.text = c.get("text", "")
            iq.append(q)
            res = await iq.send(timeout=10)
            if op == "private_set":
                return {}
            got = res.xml.find(NS_PRIVATE + "query/{%s}%s" % (c["ns"], c["name"]))
            return {"found": got is not None, "text": (got.text or "") if got is not None else ""}
        if op == "query":
            # An IQ get with an empty payload <name xmlns=ns/>, to see
            # which error the server answers for what it does not serve.
            iq = self.Iq()
            iq["type"] = "get"
            if to:
                iq["to"] = to
            iq.append(ET.Element("{%s}%s" % (c["ns"], c["name"])))
            await iq.send(timeout=10)
            return {}
        if op == "disconnect":
            self.disconnect()
            return {}
        raise ValueError("unknown op %r" % op)


def roster_items(iq):
    out = {}
    for jid, item in iq["roster"]["items"].items():
        out[str(jid)] = {"subscription": item["subscription"], "ask": item["ask"],
                         "name": item["name"], "groups": sorted(item["groups"])}
    return out


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["starttls", "direct"], default="starttls")
    p.add_argument("--mech", help="the one SASL mechanism to try (default: the best offered)")
    p.add_argument("--no-roster", action="store_true")
    p.add_argument("--no-presence", action="store_true")
    p.add_argument("--priority", type=int)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()

    client = Client(args)
    # slixmpp takes the TLS server name (SNI) from the host it connects to;
    # the tests connect to an IP address, so name the JID's domain, as a
    # client that found the server through DNS would.
    client.default_domain = client.boundjid.domain
    if args.mode == "direct":
        client.enable_direct_tls = True
        client.connect((args.host, args.port), use_ssl=True, disable_starttls=True)
    else:
        client.connect((args.host, args.port), force_starttls=True)
    try:
        code = await asyncio.wait_for(client.done, args.timeout)
    except asyncio.TimeoutError:
        emit("timeout", seconds=args.timeout)
        code = 3
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.get_event_loop().run_until_complete(main()))
