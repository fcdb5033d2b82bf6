#!/usr/bin/env python3
"""tests/ews/standin.py - a stand-in for Exchange Web Services and Microsoft's
sign-in service (client credentials), for casemail's tests. Python 3 standard
library only. Follows ../shared/EWS-NOTES.md; refuses what Exchange refuses.

One process serves, on 127.0.0.1:
  EWS        POST /EWS/Exchange.asmx over HTTPS (--cert/--key) and, optionally,
             plain HTTP (for --no-exchange-ssl); SOAP 1.1; Basic, NTLM (MS-NLMP,
             handshake bound to the TCP connection), Bearer tokens from the
             token endpoint below (app-only: ExchangeImpersonation + X-AnchorMailbox).
  token      POST /{tenant}/oauth2/v2.0/token (HTTPS), client credentials, with
             the Microsoft identity platform's error JSON (AADSTS codes);
             POST|GET /introspect for Dovecot's oauth2 passdb (RFC 7662 style).
  control    plain HTTP, no auth, for tests: /_control/... (tests/ews/README.md).

Usage: standin.py --config FILE --cert CRT --key KEY [--state-dir DIR]
                  [--server-version 2010sp2|current|...] [--token-lifetime S]
                  [--ews-port N] [--ews-http-port N|-1] [--token-port N]
                  [--control-port N] [--log FILE] [--verbose]
Ports 0 = any free port; the chosen ones go to STATE_DIR/ports.json, the pid
to STATE_DIR/pid.
"""
import argparse
import base64
import binascii
import collections
import datetime
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import hmac
import http.server
import json
import os
import secrets
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape as _xml_escape

NS_S = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS_E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_XSD = "http://www.w3.org/2001/XMLSchema"

MAX_EWS_REQUEST = 64 * 1024 * 1024
MAX_TOKEN_REQUEST = 64 * 1024
MAX_CONTROL_REQUEST = 512 * 1024 * 1024


# =========================================================================
# MD4 (RFC 1320) in pure Python: hashlib has no MD4 under OpenSSL 3.
# =========================================================================

def md4(data):
    data = bytes(data)
    mask = 0xFFFFFFFF

    def rotl(v, s):
        v &= mask
        return ((v << s) | (v >> (32 - s))) & mask

    msg = bytearray(data)
    bitlen = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += struct.pack("<Q", bitlen)
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    rounds = (
        (lambda x, y, z: (x & y) | (~x & z), list(range(16)), (3, 7, 11, 19), 0),
        (lambda x, y, z: (x & y) | (x & z) | (y & z),
         [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15], (3, 5, 9, 13), 0x5A827999),
        (lambda x, y, z: x ^ y ^ z,
         [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15], (3, 9, 11, 15), 0x6ED9EBA1),
    )
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", bytes(msg[off:off + 64]))
        r = list(h)
        for fn, order, shifts, const in rounds:
            for i, k in enumerate(order):
                idx = (-i) % 4
                a, b, c, d = r[idx], r[(idx + 1) % 4], r[(idx + 2) % 4], r[(idx + 3) % 4]
                r[idx] = rotl(a + (fn(b, c, d) & mask) + x[k] + const, shifts[i % 4])
        h = [(h[i] + r[i]) & mask for i in range(4)]
    return struct.pack("<4I", *h)


def hmac_md5(key, msg):
    return hmac.new(key, msg, hashlib.md5).digest()


def ntowfv1(password):
    return md4(password.encode("utf-16-le"))


def ntowfv2(password, user, domain):
    return hmac_md5(ntowfv1(password), (user.upper() + domain).encode("utf-16-le"))


# =========================================================================
# NTLM messages (MS-NLMP)
# =========================================================================

NTLMSSP_SIG = b"NTLMSSP\x00"
NEG_UNICODE = 0x00000001
NEG_OEM = 0x00000002
REQUEST_TARGET = 0x00000004
NEG_NTLM = 0x00000200
NEG_ALWAYS_SIGN = 0x00008000
TARGET_TYPE_DOMAIN = 0x00010000
NEG_EXTENDED_SESSIONSECURITY = 0x00080000
NEG_TARGET_INFO = 0x00800000
NEG_VERSION = 0x02000000


class NtlmError(Exception):
    pass


def av_pairs(pairs):
    out = b""
    for av_id, value in pairs:
        out += struct.pack("<HH", av_id, len(value)) + value
    return out + struct.pack("<HH", 0, 0)


def filetime_now():
    return struct.pack("<Q", int((time.time() + 11644473600) * 10000000))


def ntlm_parse(blob):
    if len(blob) < 12 or blob[:8] != NTLMSSP_SIG:
        raise NtlmError("not an NTLMSSP message")
    return struct.unpack("<I", blob[8:12])[0]


def ntlm_type1_flags(blob):
    if len(blob) < 16 or ntlm_parse(blob) != 1:
        raise NtlmError("not a NEGOTIATE_MESSAGE")
    return struct.unpack("<I", blob[12:16])[0]


def ntlm_type2(client_flags, challenge, nb_domain, nb_server, dns_domain, dns_server):
    flags = (REQUEST_TARGET | NEG_NTLM | NEG_ALWAYS_SIGN | TARGET_TYPE_DOMAIN |
             NEG_TARGET_INFO | NEG_VERSION)
    unicode_ = bool(client_flags & NEG_UNICODE)
    flags |= NEG_UNICODE if unicode_ else NEG_OEM
    if client_flags & NEG_EXTENDED_SESSIONSECURITY:
        flags |= NEG_EXTENDED_SESSIONSECURITY
    target = nb_domain.encode("utf-16-le" if unicode_ else "latin-1")
    ti = av_pairs([
        (2, nb_domain.encode("utf-16-le")),
        (1, nb_server.encode("utf-16-le")),
        (4, dns_domain.encode("utf-16-le")),
        (3, dns_server.encode("utf-16-le")),
        (7, filetime_now()),
    ])
    off = 56
    version = bytes([6, 1]) + struct.pack("<H", 7601) + b"\x00\x00\x00\x0f"
    head = (NTLMSSP_SIG + struct.pack("<I", 2) +
            struct.pack("<HHI", len(target), len(target), off) +
            struct.pack("<I", flags) + challenge + b"\x00" * 8 +
            struct.pack("<HHI", len(ti), len(ti), off + len(target)) + version)
    return head + target + ti


def ntlm_type3_parse(blob):
    if len(blob) < 52 or ntlm_parse(blob) != 3:
        raise NtlmError("not an AUTHENTICATE_MESSAGE")

    def field(off):
        ln, _mx, o = struct.unpack("<HHI", blob[off:off + 8])
        if o + ln > len(blob):
            raise NtlmError("field out of range")
        return blob[o:o + ln]

    flags = struct.unpack("<I", blob[60:64])[0] if len(blob) >= 64 else 0
    enc = "utf-16-le" if flags & NEG_UNICODE else "latin-1"
    try:
        return {
            "lm": field(12), "nt": field(20),
            "domain": field(28).decode(enc), "user": field(36).decode(enc),
            "workstation": field(44).decode(enc), "flags": flags,
        }
    except UnicodeDecodeError as e:
        raise NtlmError("bad string encoding") from e


def ntlmv2_verify(nt_response, challenge, user, domain, password):
    """True when NtChallengeResponse is NTProofStr + blob for this password."""
    if len(nt_response) <= 24 or nt_response[16:18] != b"\x01\x01":
        return False
    proof, blob = nt_response[:16], nt_response[16:]
    key = ntowfv2(password, user, domain)
    return hmac.compare_digest(proof, hmac_md5(key, challenge + blob))


# =========================================================================
# Versions
# =========================================================================

REQUEST_VERSIONS = ["Exchange2007", "Exchange2007_SP1", "Exchange2010", "Exchange2010_SP1",
                    "Exchange2010_SP2", "Exchange2013", "Exchange2013_SP1", "Exchange2016"]
# name -> (newest accepted request version, (major, minor, build, minorbuild, Version attr or None))
SERVER_VERSIONS = {
    "2007sp1": ("Exchange2007_SP1", (8, 1, 240, 6, None)),
    "2010": ("Exchange2010", (14, 0, 639, 21, "Exchange2010")),
    "2010sp1": ("Exchange2010_SP1", (14, 1, 218, 15, "Exchange2010_SP1")),
    "2010sp2": ("Exchange2010_SP2", (14, 2, 247, 5, "Exchange2010_SP2")),
    "2010sp3": ("Exchange2010_SP2", (14, 3, 123, 4, "Exchange2010_SP2")),
    "2013": ("Exchange2013_SP1", (15, 0, 847, 32, "Exchange2013_SP1")),
    "current": ("Exchange2016", (15, 1, 2507, 6, "V2017_07_11")),
}

DISTINGUISHED = ["calendar", "contacts", "deleteditems", "drafts", "inbox", "journal", "notes",
                 "outbox", "sentitems", "tasks", "msgfolderroot", "publicfoldersroot", "root",
                 "junkemail", "searchfolders", "voicemail", "recoverableitemsroot",
                 "recoverableitemsdeletions", "recoverableitemsversions",
                 "recoverableitemspurges", "archiveroot", "archivemsgfolderroot",
                 "archivedeleteditems", "archiveinbox", "conversationhistory"]
# folders every mailbox has: distinguished id -> (display name, parent)
STANDARD_FOLDERS = [
    ("root", "Top of Information Store", None),
    ("msgfolderroot", "Top of Information Store", "root"),
    ("inbox", "Inbox", "msgfolderroot"),
    ("sentitems", "Sent Items", "msgfolderroot"),
    ("deleteditems", "Deleted Items", "msgfolderroot"),
    ("drafts", "Drafts", "msgfolderroot"),
    ("junkemail", "Junk Email", "msgfolderroot"),
    ("outbox", "Outbox", "msgfolderroot"),
]

MESSAGES = {
    "ErrorItemNotFound": "The specified object was not found in the store.",
    "ErrorInvalidIdMalformed": "Id is malformed.",
    "ErrorInvalidIdEmpty": "Id must be non-empty.",
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
    "ErrorNonExistentMailbox": "The SMTP address has no mailbox associated with it.",
    "ErrorInvalidChangeKey": "The change key is invalid.",
    "ErrorChangeKeyRequiredForWriteOperations":
        "When making a write request, the change key must be supplied.",
    "ErrorIrresolvableConflict": "The send or update operation could not be performed because "
        "the change key passed in the request does not match the current change key for the item.",
    "ErrorMessageDispositionRequired": "MessageDisposition attribute is required.",
    "ErrorInvalidRecipients": "At least one recipient isn't valid.",
    "ErrorSendAsDenied": "The user account which was used to submit this request does not have "
        "the right to send mail on behalf of the specified sending account.",
    "ErrorInvalidSyncStateData": "Synchronization state data is corrupt or otherwise invalid.",
    "ErrorInvalidIndexedPagingParameters": "The paging parameters are invalid.",
    "ErrorInvalidPagingMaxRows": "The maximum entries returned value must be greater than zero.",
    "ErrorInvalidPropertySet": "Set action is invalid for property.",
    "ErrorUpdatePropertyMismatch": "An object within a change description must contain one and "
        "only one property to modify.",
    "ErrorUnsupportedPathForQuery": "The property path is not supported in a restriction.",
    "ErrorUnsupportedQueryFilter": "The restriction or sort order is too complex for this operation.",
    "ErrorInvalidServerVersion": "The specified server version is invalid.",
    "ErrorInvalidExchangeImpersonationHeaderData":
        "ExchangeImpersonation SOAP header must be present for this type of OAuth token.",
    "ErrorImpersonateUserDenied": "The account does not have permission to impersonate the requested user.",
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorUnsupportedMimeConversion": "Mime conversion is not supported for this item type.",
    "ErrorInvalidPropertySet": "Set action is invalid for property.",
    "ErrorMoveCopyFailed": "The move or copy operation failed.",
    "ErrorMessageSizeExceeded": "The message exceeds the maximum supported size.",
    "ErrorSchemaValidation": "The request failed schema validation.",
    "ErrorInvalidRequest": "The request is invalid.",
}


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def x(text):
    return _xml_escape(str(text))


def xa(text):
    return _xml_escape(str(text), {'"': "&quot;"})


def b64(data):
    return base64.b64encode(data).decode("ascii")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# =========================================================================
# Errors raised by operations
# =========================================================================

class Fault(Exception):
    """A SOAP fault (HTTP 500)."""

    def __init__(self, code, text=None, violation=None, extra=""):
        super().__init__(code)
        self.code = code
        self.text = text or MESSAGES.get(code, code)
        self.violation = violation
        self.extra = extra


def schema_fault(violation):
    return Fault("ErrorSchemaValidation", "The request failed schema validation: " + violation,
                 violation=violation)


class RespError(Exception):
    """A per-ResponseMessage error (HTTP 200, ResponseClass=Error)."""

    def __init__(self, code, text=None):
        super().__init__(code)
        self.code = code
        self.text = text or MESSAGES.get(code, code)


# =========================================================================
# The store: mailboxes, folders, items
# =========================================================================

ITEM_PREFIX = b"\x00\x00\x00\x2eITM"
FOLDER_PREFIX = b"\x00\x00\x00\x2eFLD"
CK_PREFIX = b"\x09\x00\x00\x00CK"


def new_item_id():
    return b64(ITEM_PREFIX + secrets.token_bytes(24))


def new_folder_id():
    return b64(FOLDER_PREFIX + secrets.token_bytes(24))


def check_id(value, prefix, what="Id"):
    """Raises RespError for empty/malformed ids."""
    if value is None or value == "":
        raise RespError("ErrorInvalidIdEmpty")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RespError("ErrorInvalidIdMalformed")
    if len(raw) != len(prefix) + 24 or not raw.startswith(prefix):
        raise RespError("ErrorInvalidIdMalformed")


def make_change_key(n):
    return b64(CK_PREFIX + struct.pack(">Q", n))


def change_key_valid(ck):
    try:
        raw = base64.b64decode(ck, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == len(CK_PREFIX) + 8 and raw.startswith(CK_PREFIX)


# An item's class decides its element and what EWS can do with it: only
# messages and posts (MessageType, PostItemType) have IsRead to set, not
# a calendar item; a contact or a task has no MIME form
# (ErrorUnsupportedMimeConversion).
ITEM_ELEMENTS = {"IPM.Contact": "Contact", "IPM.Task": "Task", "IPM.Post": "PostItem",
                 "IPM.Appointment": "CalendarItem"}


def item_element(item_class):
    return ITEM_ELEMENTS.get(item_class, "Message")


class Item:
    def __init__(self, store, folder, mime, is_read=False, received=None, item_class="IPM.Note"):
        self.item_class = item_class
        self.id = new_item_id()
        self.folder = folder
        self.mime = bytes(mime)
        self.is_read = bool(is_read)
        self.received = received or now_utc()
        self.ck_n = store.next_ck()
        self.created_seq = store.next_seq()
        self.last_mod_seq = self.created_seq
        self.last_change = "create"
        self._headers = None

    @property
    def change_key(self):
        return make_change_key(self.ck_n)

    def headers(self):
        if self._headers is None:
            try:
                self._headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(self.mime)
            except Exception:  # noqa: BLE001 - any garbage still is an item
                self._headers = email.message.Message()
        return self._headers

    def header(self, name):
        v = self.headers().get(name)
        if v is None:
            return ""
        try:
            return str(email.header.make_header(email.header.decode_header(str(v))))
        except Exception:  # noqa: BLE001
            return str(v)

    @property
    def subject(self):
        return self.header("Subject")

    @property
    def message_id(self):
        return self.header("Message-ID").strip()

    @property
    def has_attachments(self):
        ct = self.header("Content-Type").lower()
        return ct.startswith("multipart/mixed")



class Folder:
    def __init__(self, mailbox, name, dist=None, parent=None):
        self.id = new_folder_id()
        self.mailbox = mailbox
        self.name = name
        self.dist = dist
        self.parent = parent
        self.children = []
        self.items = collections.OrderedDict()
        self.tombstones = []  # (item_id, change_key, created_seq, removed_seq)
        self.ck_n = 1
        if parent is not None:
            parent.children.append(self)

    @property
    def change_key(self):
        return make_change_key(self.ck_n)

    def path(self):
        parts = []
        f = self
        while f is not None and f.dist not in ("msgfolderroot", "root"):
            parts.append(f.dist or f.name)
            f = f.parent
        return "/".join(reversed(parts))


class Mailbox:
    def __init__(self, address, tenant=None, send_as=()):
        self.address = address
        self.tenant = tenant
        self.send_as = {a.lower() for a in send_as}
        self.folders = {}
        self.by_dist = {}

    def add_folder(self, name, dist=None, parent=None):
        f = Folder(self, name, dist, parent)
        self.folders[f.id] = f
        if dist:
            self.by_dist[dist] = f
        return f

    def folder_by_path(self, path):
        """'Processed', 'inbox/Sub', 'Archive/2024' (under msgfolderroot)."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None
        if parts[0] in self.by_dist:
            cur = self.by_dist[parts[0]]
            parts = parts[1:]
        else:
            cur = self.by_dist["msgfolderroot"]
        for p in parts:
            nxt = [c for c in cur.children if c.name.lower() == p.lower()]
            if not nxt:
                return None
            cur = nxt[0]
        return cur

    def ensure_path(self, path):
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] in self.by_dist:
            cur = self.by_dist[parts[0]]
            parts = parts[1:]
        else:
            cur = self.by_dist["msgfolderroot"]
        for p in parts:
            nxt = [c for c in cur.children if c.name.lower() == p.lower()]
            cur = nxt[0] if nxt else self.add_folder(p, None, cur)
        return cur


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self._seq = 0
        self._ck = 0
        self.mailboxes = {}
        self.items = {}
        self.folders = {}
        self.submissions = []  # sent messages (SendOnly / SendAndSaveCopy)

    def next_seq(self):
        self._seq += 1
        return self._seq

    def next_ck(self):
        self._ck += 1
        return self._ck

    def build(self, config, tenant_of):
        with self.lock:
            self.mailboxes.clear()
            self.items.clear()
            self.folders.clear()
            self.submissions.clear()
            for mb in config.get("mailboxes", []):
                addr = mb["address"]
                m = Mailbox(addr, tenant_of(addr), mb.get("send_as", ()))
                for dist, name, parent in STANDARD_FOLDERS:
                    m.add_folder(name, dist, m.by_dist.get(parent) if parent else None)
                for extra in mb.get("folders", []):
                    if extra in DISTINGUISHED:
                        if extra not in m.by_dist:
                            m.add_folder(extra.capitalize(), extra, m.by_dist["msgfolderroot"])
                    else:
                        m.ensure_path(extra)
                self.mailboxes[addr.lower()] = m
                self.folders.update(m.folders)

    def mailbox(self, addr):
        return self.mailboxes.get((addr or "").lower())

    def add_folder(self, mailbox, path):
        with self.lock:
            f = mailbox.ensure_path(path)
            self.folders.update(mailbox.folders)
            return f

    def deliver(self, mailbox, folder, mime, is_read=False, item_class="IPM.Note"):
        with self.lock:
            it = Item(self, folder, mime, is_read, item_class=item_class)
            folder.items[it.id] = it
            self.items[it.id] = it
            folder.ck_n += 1
            return it

    def remove(self, item):
        with self.lock:
            f = item.folder
            f.items.pop(item.id, None)
            self.items.pop(item.id, None)
            f.tombstones.append((item.id, item.change_key, item.created_seq, self.next_seq()))
            f.ck_n += 1

    def move(self, item, dest):
        with self.lock:
            new = Item(self, dest, item.mime, item.is_read, item.received, item.item_class)
            self.remove(item)
            dest.items[new.id] = new
            self.items[new.id] = new
            dest.ck_n += 1
            return new

    def copy(self, item, dest):
        with self.lock:
            new = Item(self, dest, item.mime, item.is_read, item.received, item.item_class)
            dest.items[new.id] = new
            self.items[new.id] = new
            dest.ck_n += 1
            return new

    def set_read(self, item, value):
        with self.lock:
            changed = item.is_read != value
            item.is_read = value
            item.ck_n = self.next_ck()
            if changed:
                item.last_mod_seq = self.next_seq()
                item.last_change = "read"


# =========================================================================
# Stats
# =========================================================================

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.c = collections.defaultdict(collections.Counter)

    def inc(self, group, key, n=1):
        with self.lock:
            self.c[group][key] += n

    def snapshot(self):
        with self.lock:
            return {g: dict(c) for g, c in self.c.items()}


# =========================================================================
# Tokens
# =========================================================================

class TokenStore:
    def __init__(self, lifetime):
        self.lock = threading.Lock()
        self.lifetime = int(lifetime)
        self.key = secrets.token_bytes(32)
        self.tokens = {}

    def issue(self, tenant, app, resource):
        now = int(time.time())
        exp = now + self.lifetime
        claims = {
            "aud": resource, "iss": "https://sts.windows.net/%s/" % tenant["id"],
            "iat": now, "nbf": now, "exp": exp, "appid": app["client_id"],
            "roles": list(app.get("roles", [])), "tid": tenant["id"],
            "oid": app.get("object_id", str(uuid.uuid5(uuid.NAMESPACE_URL, app["client_id"]))),
            "jti": b64url(secrets.token_bytes(12)),
        }
        head = b64url(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "standin"}).encode())
        body = b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = b64url(hmac.new(self.key, (head + "." + body).encode(), hashlib.sha256).digest())
        token = head + "." + body + "." + sig
        with self.lock:
            # drop long-expired tokens so the map stays bounded
            if len(self.tokens) > 10000:
                cut = now - 3600
                self.tokens = {k: v for k, v in self.tokens.items() if v["exp"] > cut}
            self.tokens[token] = {"tenant": tenant["id"], "client_id": app["client_id"],
                                  "resource": resource, "exp": exp, "roles": claims["roles"]}
        return token, self.lifetime

    def lookup(self, token):
        """-> record (dict, copy) or None when unknown/unparsable."""
        with self.lock:
            rec = self.tokens.get(token)
            return dict(rec) if rec else None

    def expire_all(self):
        with self.lock:
            t = int(time.time()) - 1
            for rec in self.tokens.values():
                rec["exp"] = min(rec["exp"], t)
            return len(self.tokens)


# =========================================================================
# Configuration
# =========================================================================

DEFAULT_AUDIENCES = ["https://outlook.office365.com", "https://outlook.office.com",
                     "https://localhost", "https://127.0.0.1"]
DEFAULT_RESOURCES = DEFAULT_AUDIENCES + ["https://graph.microsoft.com",
                                         "https://outlook.office365.com/"]


class Config:
    def __init__(self, data, args):
        self.data = data
        self.server_version = args.server_version or data.get("server_version", "current")
        if self.server_version not in SERVER_VERSIONS:
            raise SystemExit("unknown --server-version %r (one of %s)" % (
                self.server_version, ", ".join(SERVER_VERSIONS)))
        auth = data.get("auth", {})
        self.enabled = [s.lower() for s in auth.get("enabled", ["basic", "ntlm", "bearer"])]
        self.advertise = auth.get("advertise", ["Negotiate", "NTLM", "Basic", "Bearer"])
        self.basic_realm = auth.get("basic_realm")  # None -> the Host header's name
        nt = data.get("ntlm", {})
        self.nb_domain = nt.get("netbios_domain", "CONTOSO")
        self.dns_domain = nt.get("dns_domain", "contoso.test")
        self.nb_server = nt.get("netbios_server", "EXCH01")
        self.dns_server = nt.get("dns_server", "exch01." + self.dns_domain)
        self.http_requires_ssl = bool(data.get("http_requires_ssl", False))
        self.audiences = data.get("ews_audiences", DEFAULT_AUDIENCES)
        self.resources = data.get("cloud_resources", DEFAULT_RESOURCES)
        self.tenants = data.get("tenants", [])
        self.apps = data.get("apps", [])
        self.users = data.get("users", [])
        self.token_lifetime = int(args.token_lifetime if args.token_lifetime is not None
                                  else data.get("token_lifetime", 3599))
        ports = data.get("ports", {})
        self.ports = {
            "ews": args.ews_port if args.ews_port is not None else ports.get("ews", 0),
            "ews_http": args.ews_http_port if args.ews_http_port is not None else ports.get("ews_http", 0),
            "token": args.token_port if args.token_port is not None else ports.get("token", 0),
            "control": args.control_port if args.control_port is not None else ports.get("control", 0),
        }

    def tenant(self, ident):
        ident = (ident or "").lower()
        for t in self.tenants:
            if t["id"].lower() == ident or ident in [d.lower() for d in t.get("domains", [])]:
                return t
        return None

    def tenant_of_address(self, addr):
        dom = addr.rpartition("@")[2].lower()
        for t in self.tenants:
            if dom in [d.lower() for d in t.get("domains", [])]:
                return t["id"]
        return None

    def app(self, client_id):
        for a in self.apps:
            if a["client_id"].lower() == (client_id or "").lower():
                return a
        return None

    def user_for(self, name, domain=None):
        """Finds a configured user by 'DOMAIN\\name', 'name@upn', or name (+domain)."""
        name = name or ""
        if domain is None and "\\" in name:
            domain, name = name.split("\\", 1)
        for u in self.users:
            upn = u.get("upn", "")
            if domain:
                doms = {u.get("domain", self.nb_domain).lower(), self.dns_domain.lower()}
                if u.get("dns_domain"):
                    doms.add(u["dns_domain"].lower())
                if domain.lower() in doms and u["name"].lower() == name.lower():
                    return u
            elif "@" in name:
                if upn and upn.lower() == name.lower():
                    return u
            elif u["name"].lower() == name.lower() and \
                    u.get("domain", self.nb_domain).lower() == self.nb_domain.lower():
                return u
        return None


# =========================================================================
# Principals
# =========================================================================

class Principal:
    def __init__(self, kind, name, scheme, user=None, app=None, token=None):
        self.kind = kind          # "user" | "app"
        self.name = name
        self.scheme = scheme      # basic | ntlm | bearer
        self.user = user
        self.app = app
        self.token = token

    @property
    def own_mailbox(self):
        return self.user.get("mailbox") if self.user else None

    def may_access(self, address):
        a = address.lower()
        if self.kind == "app":
            mbs = [m.lower() for m in self.app.get("mailboxes", ["*"])]
            return "*" in mbs or a in mbs
        own = (self.user.get("mailbox") or "").lower()
        return a == own or a in [d.lower() for d in self.user.get("delegate", [])]

    def may_impersonate(self, address):
        if self.kind == "app":
            return self.may_access(address)
        imp = self.user.get("impersonation", [])
        if imp is True:
            return True
        return address.lower() in [i.lower() for i in imp or []] or "*" in (imp or [])


# =========================================================================
# XML helpers
# =========================================================================

def tq(tag):
    return "{%s}%s" % (NS_T, tag)


def mq(tag):
    return "{%s}%s" % (NS_M, tag)


def local(tag):
    return tag.rsplit("}", 1)[-1]


def ns_of(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def need(elem, tag, parent_name=None):
    child = elem.find(tag)
    if child is None:
        raise schema_fault("The element '%s' in namespace '%s' has incomplete content. "
                           "List of possible elements expected: '%s' in namespace '%s'." % (
                               parent_name or local(elem.tag), ns_of(elem.tag), local(tag), ns_of(tag)))
    return child


def need_attr(elem, name):
    v = elem.get(name)
    if v is None:
        raise schema_fault("The required attribute '%s' is missing." % name)
    return v


def enum_attr(elem, name, allowed, default=None, typename=None):
    v = elem.get(name)
    if v is None:
        return default
    if v not in allowed:
        raise schema_fault("The '%s' attribute is invalid - The value '%s' is invalid according to "
                           "its datatype '%s:%s' - The Enumeration constraint failed." % (
                               name, v, NS_T, typename or name + "Type"))
    return v


def parse_bool(text, what):
    t = (text or "").strip()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise schema_fault("The '%s' element is invalid - The value '%s' is invalid according to its "
                       "datatype 'http://www.w3.org/2001/XMLSchema:boolean' - The string '%s' is not "
                       "a valid Boolean value." % (what, t, t))


def parse_int(text, what):
    try:
        return int((text or "").strip())
    except ValueError:
        raise schema_fault("The '%s' element is invalid - The value '%s' is invalid according to "
                           "its datatype 'http://www.w3.org/2001/XMLSchema:int'." % (what, text))


def soap_envelope(body, version_info):
    major, minor, build, minor_build, vattr = version_info
    vat = ' Version="%s"' % vattr if vattr else ""
    header = ('<s:Header><h:ServerVersionInfo MajorVersion="%d" MinorVersion="%d" MajorBuildNumber="%d" '
              'MinorBuildNumber="%d"%s xmlns:h="%s" xmlns="%s" xmlns:xsd="%s" xmlns:xsi="%s"/></s:Header>'
              % (major, minor, build, minor_build, vat, NS_T, NS_T, NS_XSD, NS_XSI))
    return ('<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="%s">%s'
            '<s:Body xmlns:xsi="%s" xmlns:xsd="%s">%s</s:Body></s:Envelope>'
            % (NS_S, header, NS_XSI, NS_XSD, body)).encode("utf-8")


def soap_fault(f):
    detail = ('<e:ResponseCode xmlns:e="%s">%s</e:ResponseCode><e:Message xmlns:e="%s">%s</e:Message>'
              % (NS_E, x(f.code), NS_E, x(MESSAGES.get(f.code, f.text) if f.violation else f.text)))
    if f.violation:
        detail += ('<t:MessageXml xmlns:t="%s"><t:LineNumber>1</t:LineNumber>'
                   '<t:LinePosition>0</t:LinePosition><t:Violation>%s</t:Violation></t:MessageXml>'
                   % (NS_T, x(f.violation)))
    detail += f.extra
    return ('<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="%s"><s:Body><s:Fault>'
            '<faultcode xmlns:a="%s">a:%s</faultcode><faultstring xml:lang="en-US">%s</faultstring>'
            '<detail>%s</detail></s:Fault></s:Body></s:Envelope>'
            % (NS_S, NS_T, x(f.code), x(f.text), detail)).encode("utf-8")


def resp_msg(op, inner="", error=None, error_tail=""):
    name = "m:%sResponseMessage" % op
    if error is not None:
        return ('<%s ResponseClass="Error"><m:MessageText>%s</m:MessageText><m:ResponseCode>%s'
                '</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>%s</%s>'
                % (name, x(error.text), x(error.code), error_tail, name))
    return ('<%s ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>%s</%s>'
            % (name, inner, name))


# =========================================================================
# EWS operations
# =========================================================================

ITEM_FIELDS = {"item:MimeContent", "item:ItemId", "item:ParentFolderId", "item:ItemClass",
               "item:Subject", "item:DateTimeReceived", "item:Size", "item:DateTimeSent",
               "item:HasAttachments", "message:From", "message:InternetMessageId",
               "message:IsRead", "message:Sender", "item:DateTimeCreated"}


class Shape:
    def __init__(self, elem, op):
        self.base = "IdOnly"
        self.mime = False
        self.fields = set()
        if elem is None:
            return
        base = need(elem, tq("BaseShape"))
        if base.text not in ("IdOnly", "Default", "AllProperties"):
            raise schema_fault("The 'BaseShape' element is invalid - The value '%s' is invalid "
                               "according to its datatype '%s:DefaultShapeNamesType' - The "
                               "Enumeration constraint failed." % (base.text, NS_T))
        self.base = base.text
        inc = elem.find(tq("IncludeMimeContent"))
        if inc is not None:
            self.mime = parse_bool(inc.text, "IncludeMimeContent")
        add = elem.find(tq("AdditionalProperties"))
        if add is not None:
            for p in add:
                if local(p.tag) == "FieldURI":
                    self.fields.add(p.get("FieldURI", ""))
        if "item:MimeContent" in self.fields:
            self.mime = True
        if op in ("FindItem", "SyncFolderItems"):
            self.mime = False  # FindItem/SyncFolderItems never return MIME

    def want(self, field):
        if field in self.fields:
            return True
        if self.base == "IdOnly":
            return False
        default = {"item:Subject", "item:DateTimeReceived", "item:Size", "item:HasAttachments",
                   "message:From", "message:IsRead", "item:DateTimeSent", "item:ItemClass"}
        if self.base == "AllProperties":
            default |= {"message:InternetMessageId", "item:ParentFolderId", "item:DateTimeCreated"}
        return field in default


def render_item(it, shape, full_from=True):
    parts = []
    element = item_element(it.item_class)
    if shape.mime:
        if element in ("Contact", "Task"):
            raise RespError("ErrorUnsupportedMimeConversion")
        parts.append('<t:MimeContent CharacterSet="UTF-8">%s</t:MimeContent>' % b64(it.mime))
    parts.append('<t:ItemId Id="%s" ChangeKey="%s"/>' % (xa(it.id), xa(it.change_key)))
    if shape.want("item:ParentFolderId"):
        parts.append('<t:ParentFolderId Id="%s" ChangeKey="%s"/>' % (
            xa(it.folder.id), xa(it.folder.change_key)))
    if shape.want("item:ItemClass"):
        parts.append("<t:ItemClass>%s</t:ItemClass>" % x(it.item_class))
    if shape.want("item:Subject"):
        parts.append("<t:Subject>%s</t:Subject>" % x(it.subject))
    if shape.want("item:DateTimeReceived"):
        parts.append("<t:DateTimeReceived>%s</t:DateTimeReceived>" % iso(it.received))
    if shape.want("item:Size"):
        parts.append("<t:Size>%d</t:Size>" % len(it.mime))
    if shape.want("item:DateTimeSent"):
        parts.append("<t:DateTimeSent>%s</t:DateTimeSent>" % iso(it.received))
    if shape.want("item:DateTimeCreated"):
        parts.append("<t:DateTimeCreated>%s</t:DateTimeCreated>" % iso(it.received))
    if shape.want("item:HasAttachments"):
        parts.append("<t:HasAttachments>%s</t:HasAttachments>" % ("true" if it.has_attachments else "false"))
    if shape.want("message:From"):
        name, addr = email.utils.parseaddr(it.header("From"))
        inner = "<t:Name>%s</t:Name>" % x(name or addr)
        if full_from:
            inner += "<t:EmailAddress>%s</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType>" % x(addr)
        parts.append("<t:From><t:Mailbox>%s</t:Mailbox></t:From>" % inner)
    if shape.want("message:InternetMessageId"):
        parts.append("<t:InternetMessageId>%s</t:InternetMessageId>" % x(it.message_id))
    if shape.want("message:IsRead"):
        parts.append("<t:IsRead>%s</t:IsRead>" % ("true" if it.is_read else "false"))
    return "<t:%s>%s</t:%s>" % (element, "".join(parts), element)


def render_folder(f, base):
    parts = ['<t:FolderId Id="%s" ChangeKey="%s"/>' % (xa(f.id), xa(f.change_key))]
    if base != "IdOnly":
        if f.parent is not None:
            parts.append('<t:ParentFolderId Id="%s" ChangeKey="%s"/>' % (xa(f.parent.id), xa(f.parent.change_key)))
        parts.append("<t:FolderClass>IPF.Note</t:FolderClass>")
        parts.append("<t:DisplayName>%s</t:DisplayName>" % x(f.name))
        parts.append("<t:TotalCount>%d</t:TotalCount>" % len(f.items))
        parts.append("<t:ChildFolderCount>%d</t:ChildFolderCount>" % len(f.children))
        parts.append("<t:UnreadCount>%d</t:UnreadCount>" % sum(1 for i in f.items.values() if not i.is_read))
    return "<t:Folder>%s</t:Folder>" % "".join(parts)


class Ews:
    """Runs one SOAP request for a principal. All store access under store.lock."""

    def __init__(self, server):
        self.srv = server
        self.store = server.store
        self.cfg = server.cfg

    # ---------------------------------------------------------------- context
    def resolve_mailbox(self, address, for_impersonation=False):
        mb = self.store.mailbox(address)
        if mb is None:
            raise RespError("ErrorNonExistentMailbox")
        if not self.principal.may_access(mb.address) and mb is not self.acting:
            raise RespError("ErrorAccessDenied")
        return mb

    def folder_ref(self, elem):
        """elem: DistinguishedFolderId | FolderId -> Folder (RespError on failure)."""
        name = local(elem.tag)
        if ns_of(elem.tag) != NS_T or name not in ("DistinguishedFolderId", "FolderId"):
            raise schema_fault("The element '%s' in namespace '%s' is not expected." % (name, ns_of(elem.tag)))
        if name == "DistinguishedFolderId":
            fid = need_attr(elem, "Id")
            if fid not in DISTINGUISHED:
                raise schema_fault("The 'Id' attribute is invalid - The value '%s' is invalid according to "
                                   "its datatype '%s:DistinguishedFolderIdNameType' - The Enumeration "
                                   "constraint failed." % (fid, NS_T))
            mbel = elem.find(tq("Mailbox"))
            mb = self.acting
            if mbel is not None:
                addr = (mbel.findtext(tq("EmailAddress")) or "").strip()
                mb = self.resolve_mailbox(addr)
            if not self.principal.may_access(mb.address) and mb is not self.acting:
                raise RespError("ErrorAccessDenied")
            f = mb.by_dist.get(fid)
            if f is None:
                raise RespError("ErrorFolderNotFound")
            return f
        fid = need_attr(elem, "Id")
        try:
            check_id(fid, FOLDER_PREFIX)
        except RespError:
            raise
        f = self.store.folders.get(fid)
        if f is None or f.mailbox.address.lower() not in self.store.mailboxes:
            raise RespError("ErrorFolderNotFound")
        if f.mailbox is not self.acting and not self.principal.may_access(f.mailbox.address):
            raise RespError("ErrorAccessDenied")
        return f

    def item_ref(self, elem):
        if local(elem.tag) != "ItemId" or ns_of(elem.tag) != NS_T:
            raise schema_fault("The element '%s' in namespace '%s' is not expected." % (
                local(elem.tag), ns_of(elem.tag)))
        iid = elem.get("Id")
        if iid is None:
            raise schema_fault("The required attribute 'Id' is missing.")
        check_id(iid, ITEM_PREFIX)
        it = self.store.items.get(iid)
        if it is None:
            raise RespError("ErrorItemNotFound")
        mb = it.folder.mailbox
        if mb is not self.acting and not self.principal.may_access(mb.address):
            raise RespError("ErrorAccessDenied")
        return it

    # ------------------------------------------------------------- dispatcher
    def run(self, op_elem, principal, acting, version):
        self.principal = principal
        self.acting = acting
        self.version = version
        op = local(op_elem.tag)
        fn = getattr(self, "op_" + op, None)
        if fn is None:
            raise schema_fault("The element 'Body' in namespace '%s' has invalid child element '%s' "
                               "in namespace '%s'." % (NS_S, op, ns_of(op_elem.tag)))
        with self.store.lock:
            msgs = fn(op_elem)
        return ('<m:%sResponse xmlns:m="%s" xmlns:t="%s"><m:ResponseMessages>%s</m:ResponseMessages>'
                '</m:%sResponse>' % (op, NS_M, NS_T, "".join(msgs), op))

    # ------------------------------------------------------------- operations
    def op_GetFolder(self, el):
        shape = need(el, mq("FolderShape"))
        base = need(shape, tq("BaseShape")).text
        if base not in ("IdOnly", "Default", "AllProperties"):
            raise schema_fault("The 'BaseShape' element is invalid - The value '%s' is invalid." % base)
        ids = need(el, mq("FolderIds"))
        out = []
        for ref in list(ids):
            try:
                f = self.folder_ref(ref)
                out.append(resp_msg("GetFolder", "<m:Folders>%s</m:Folders>" % render_folder(f, base)))
            except RespError as e:
                out.append(resp_msg("GetFolder", error=e, error_tail="<m:Folders/>"))
        return out

    def op_FindFolder(self, el):
        trav = enum_attr(el, "Traversal", ("Shallow", "Deep", "SoftDeleted"), None, "FolderQueryTraversalType")
        if trav is None:
            raise schema_fault("The required attribute 'Traversal' is missing.")
        shape = need(el, mq("FolderShape"))
        base = need(shape, tq("BaseShape")).text
        restr = el.find(mq("Restriction"))
        parents = need(el, mq("ParentFolderIds"))
        out = []
        for ref in list(parents):
            try:
                f = self.folder_ref(ref)
                found = []

                def walk(node):
                    for c in node.children:
                        found.append(c)
                        if trav == "Deep":
                            walk(c)
                walk(f)
                if restr is not None and len(restr):
                    found = [c for c in found if self.eval_folder_restriction(restr[0], c)]
                body = ''.join(render_folder(c, base) for c in found)
                out.append(resp_msg("FindFolder", '<m:RootFolder TotalItemsInView="%d" '
                                    'IncludesLastItemInRange="true"><t:Folders>%s</t:Folders>'
                                    '</m:RootFolder>' % (len(found), body)))
            except RespError as e:
                out.append(resp_msg("FindFolder", error=e))
        return out

    def eval_folder_restriction(self, r, folder):
        name = local(r.tag)
        if name in ("And", "Or"):
            vals = [self.eval_folder_restriction(c, folder) for c in r]
            return all(vals) if name == "And" else any(vals)
        if name == "Not":
            return not self.eval_folder_restriction(r[0], folder)
        if name in ("IsEqualTo", "IsNotEqualTo", "Contains"):
            uri = r.find(tq("FieldURI"))
            if uri is None or uri.get("FieldURI") != "folder:DisplayName":
                raise RespError("ErrorUnsupportedPathForQuery")
            if name == "Contains":
                const = r.find(tq("Constant"))
                v = (const.get("Value") if const is not None else "") or ""
                return v.lower() in folder.name.lower()
            const = r.find(tq("FieldURIOrConstant") + "/" + tq("Constant"))
            v = (const.get("Value") if const is not None else "") or ""
            eq = folder.name.lower() == v.lower()
            return eq if name == "IsEqualTo" else not eq
        raise RespError("ErrorUnsupportedQueryFilter")

    def eval_item_restriction(self, r, it):
        name = local(r.tag)
        if name in ("And", "Or"):
            vals = [self.eval_item_restriction(c, it) for c in r]
            return all(vals) if name == "And" else any(vals)
        if name == "Not":
            return not self.eval_item_restriction(r[0], it)
        if name in ("IsEqualTo", "IsNotEqualTo", "Contains", "Exists"):
            uri = r.find(tq("FieldURI"))
            path = uri.get("FieldURI") if uri is not None else None
            values = {"message:IsRead": "true" if it.is_read else "false",
                      "item:Subject": it.subject, "message:InternetMessageId": it.message_id}
            if path not in values:
                raise RespError("ErrorUnsupportedPathForQuery")
            have = values[path]
            if name == "Exists":
                return True
            if name == "Contains":
                const = r.find(tq("Constant"))
                return ((const.get("Value") if const is not None else "") or "").lower() in have.lower()
            const = r.find(tq("FieldURIOrConstant") + "/" + tq("Constant"))
            v = (const.get("Value") if const is not None else "") or ""
            if path == "message:IsRead":
                v = "true" if v in ("true", "1") else "false"
                eq = v == have
            else:
                eq = v.lower() == have.lower()
            return eq if name == "IsEqualTo" else not eq
        raise RespError("ErrorUnsupportedQueryFilter")

    def op_FindItem(self, el):
        trav = el.get("Traversal")
        if trav is None:
            raise schema_fault("The required attribute 'Traversal' is missing.")
        enum_attr(el, "Traversal", ("Shallow", "SoftDeleted", "Associated"), None, "ItemQueryTraversalType")
        shape = Shape(need(el, mq("ItemShape")), "FindItem")
        view = el.find(mq("IndexedPageItemView"))
        offset, base_point, max_entries = 0, "Beginning", None
        if view is not None:
            max_s = view.get("MaxEntriesReturned")
            offset = parse_int(need_attr(view, "Offset"), "Offset")
            base_point = need_attr(view, "BasePoint")
            if base_point not in ("Beginning", "End"):
                raise schema_fault("The 'BasePoint' attribute is invalid - The value '%s' is invalid "
                                   "according to its datatype '%s:IndexBasePointType' - The Enumeration "
                                   "constraint failed." % (base_point, NS_T))
            if max_s is not None:
                max_entries = parse_int(max_s, "MaxEntriesReturned")
        restr = el.find(mq("Restriction"))
        sort = el.find(mq("SortOrder"))
        parents = need(el, mq("ParentFolderIds"))
        out = []
        for ref in list(parents):
            try:
                if max_entries is not None and max_entries < 1:
                    raise RespError("ErrorInvalidPagingMaxRows")
                if offset < 0:
                    raise RespError("ErrorInvalidIndexedPagingParameters")
                f = self.folder_ref(ref)
                items = list(f.items.values())
                if restr is not None and len(restr):
                    items = [i for i in items if self.eval_item_restriction(restr[0], i)]
                items = self.sort_items(items, sort)
                total = len(items)
                n = min(max_entries or 1000, 1000)  # EWSFindCountLimit
                if base_point == "Beginning":
                    page = items[offset:offset + n]
                else:
                    end = max(total - offset, 0)
                    page = items[max(end - n, 0):end]
                nxt = offset + len(page)
                last = "true" if nxt >= total else "false"
                body = "".join(render_item(i, shape, full_from=False) for i in page)
                out.append(resp_msg("FindItem", '<m:RootFolder IndexedPagingOffset="%d" TotalItemsInView="%d" '
                                    'IncludesLastItemInRange="%s"><t:Items>%s</t:Items></m:RootFolder>'
                                    % (nxt, total, last, body)))
                self.srv.stats.inc("items_listed", "FindItem", len(page))
            except RespError as e:
                out.append(resp_msg("FindItem", error=e))
        return out

    def sort_items(self, items, sort):
        # Without SortOrder: newest first (not documented; clients must send a SortOrder).
        desc = True
        key = lambda i: (i.received, i.created_seq)  # noqa: E731
        if sort is not None:
            fo = sort.find(tq("FieldOrder"))
            if fo is not None:
                desc = fo.get("Order", "Ascending") == "Descending"
                uri = fo.find(tq("FieldURI"))
                path = uri.get("FieldURI") if uri is not None else ""
                if path == "item:Subject":
                    key = lambda i: (i.subject.lower(), i.created_seq)  # noqa: E731
                elif path not in ("item:DateTimeReceived", "item:DateTimeCreated", "item:DateTimeSent"):
                    raise RespError("ErrorUnsupportedPathForQuery")
        return sorted(items, key=key, reverse=desc)

    def op_GetItem(self, el):
        shape = Shape(need(el, mq("ItemShape")), "GetItem")
        ids = need(el, mq("ItemIds"))
        out = []
        for ref in list(ids):
            try:
                it = self.item_ref(ref)
                out.append(resp_msg("GetItem", "<m:Items>%s</m:Items>" % render_item(it, shape)))
                if shape.mime:
                    self.srv.stats.inc("mime_fetched", it.folder.mailbox.address)
            except RespError as e:
                out.append(resp_msg("GetItem", error=e, error_tail="<m:Items/>"))
        return out

    def op_UpdateItem(self, el):
        disp = enum_attr(el, "MessageDisposition", ("SaveOnly", "SendOnly", "SendAndSaveCopy"), None,
                         "MessageDispositionType")
        conflict = enum_attr(el, "ConflictResolution", ("NeverOverwrite", "AutoResolve", "AlwaysOverwrite"),
                             "AutoResolve", "ConflictResolutionType")
        changes = need(el, mq("ItemChanges"))
        out = []
        for ch in changes.findall(tq("ItemChange")):
            try:
                ref = ch.find(tq("ItemId"))
                if ref is None:
                    raise schema_fault("The element 'ItemChange' in namespace '%s' has incomplete content." % NS_T)
                updates = need(ch, tq("Updates"))
                it = self.item_ref(ref)
                if disp is None:
                    raise RespError("ErrorMessageDispositionRequired")
                ck = ref.get("ChangeKey")
                if ck is None or ck == "":
                    raise RespError("ErrorChangeKeyRequiredForWriteOperations")
                if not change_key_valid(ck):
                    raise RespError("ErrorInvalidChangeKey")
                if ck != it.change_key:
                    # even AlwaysOverwrite needs the current key (EWS-NOTES §3)
                    raise RespError("ErrorIrresolvableConflict")
                new_read = None
                for up in updates:
                    kind = local(up.tag)
                    uri = up.find(tq("FieldURI"))
                    path = uri.get("FieldURI") if uri is not None else None
                    if kind != "SetItemField" or path != "message:IsRead" or \
                            item_element(it.item_class) not in ("Message", "PostItem"):
                        raise RespError("ErrorInvalidPropertySet")
                    msg = up.find(tq("Message"))
                    if msg is None or len(msg) != 1 or local(msg[0].tag) != "IsRead":
                        raise RespError("ErrorUpdatePropertyMismatch")
                    new_read = parse_bool(msg[0].text, "IsRead")
                if new_read is not None:
                    self.store.set_read(it, new_read)
                    self.srv.stats.inc("marked_read" if new_read else "marked_unread", it.folder.mailbox.address)
                out.append(resp_msg("UpdateItem", '<m:Items><t:Message><t:ItemId Id="%s" ChangeKey="%s"/>'
                                    '</t:Message></m:Items><m:ConflictResults><t:Count>0</t:Count>'
                                    '</m:ConflictResults>' % (xa(it.id), xa(it.change_key))))
            except RespError as e:
                out.append(resp_msg("UpdateItem", error=e, error_tail="<m:Items/>"))
        _ = conflict
        return out

    def _move_copy(self, el, op, copy):
        to = need(el, mq("ToFolderId"))
        if len(to) != 1:
            raise schema_fault("The element 'ToFolderId' has incomplete content.")
        ids = need(el, mq("ItemIds"))
        ret_new = el.get("ReturnNewItemIds")
        ret_new = True if ret_new is None else parse_bool(ret_new, "ReturnNewItemIds")
        out = []
        try:
            dest = self.folder_ref(to[0])
        except RespError as e:
            return [resp_msg(op, error=e, error_tail="<m:Items/>") for _ in list(ids)]
        for ref in list(ids):
            try:
                it = self.item_ref(ref)
                new = self.store.copy(it, dest) if copy else self.store.move(it, dest)
                self.srv.stats.inc("copied" if copy else "moved", dest.path())
                if ret_new:
                    out.append(resp_msg(op, '<m:Items><t:Message><t:ItemId Id="%s" ChangeKey="%s"/>'
                                        '</t:Message></m:Items>' % (xa(new.id), xa(new.change_key))))
                else:
                    out.append(resp_msg(op, "<m:Items/>"))
            except RespError as e:
                out.append(resp_msg(op, error=e, error_tail="<m:Items/>"))
        return out

    def op_MoveItem(self, el):
        return self._move_copy(el, "MoveItem", False)

    def op_CopyItem(self, el):
        return self._move_copy(el, "CopyItem", True)

    def op_DeleteItem(self, el):
        dt = el.get("DeleteType")
        if dt is None:
            raise schema_fault("The required attribute 'DeleteType' is missing.")
        enum_attr(el, "DeleteType", ("HardDelete", "SoftDelete", "MoveToDeletedItems"), None, "DisposalType")
        ids = need(el, mq("ItemIds"))
        out = []
        for ref in list(ids):
            try:
                it = self.item_ref(ref)
                if dt == "MoveToDeletedItems" and it.folder is not it.folder.mailbox.by_dist["deleteditems"]:
                    self.store.move(it, it.folder.mailbox.by_dist["deleteditems"])
                else:
                    self.store.remove(it)
                self.srv.stats.inc("deleted", dt)
                out.append(resp_msg("DeleteItem"))
            except RespError as e:
                out.append(resp_msg("DeleteItem", error=e))
        return out

    def op_SyncFolderItems(self, el):
        shape = Shape(need(el, mq("ItemShape")), "SyncFolderItems")
        fid_el = need(el, mq("SyncFolderId"))
        if len(fid_el) != 1:
            raise schema_fault("The element 'SyncFolderId' has incomplete content.")
        state_s = (el.findtext(mq("SyncState")) or "").strip()
        mx_el = need(el, mq("MaxChangesReturned"))
        mx = parse_int(mx_el.text, "MaxChangesReturned")
        if not 1 <= mx <= 512:
            raise schema_fault("The 'MaxChangesReturned' element is invalid - The value '%d' is invalid "
                               "according to its datatype '%s:MaxSyncChangesReturnedType' - The %s "
                               "constraint failed." % (mx, NS_T, "MinInclusive" if mx < 1 else "MaxInclusive"))
        ignore = {i.get("Id") for i in el.findall(mq("Ignore") + "/" + tq("ItemId"))}
        try:
            f = self.folder_ref(fid_el[0])
            since = self.decode_sync_state(state_s, f) if state_s else 0
            cands = []
            for it in f.items.values():
                if it.last_mod_seq > since:
                    cands.append((it.last_mod_seq, "item", it))
            for (iid, ck, cseq, rseq) in f.tombstones:
                if rseq > since and cseq <= since:
                    cands.append((rseq, "gone", (iid, ck)))
            cands.sort(key=lambda c: c[0])
            changes, new_since = [], since
            for seq, kind, obj in cands:
                if len(changes) >= mx:
                    break
                new_since = seq
                if kind == "gone":
                    changes.append('<t:Delete><t:ItemId Id="%s" ChangeKey="%s"/></t:Delete>' % (
                        xa(obj[0]), xa(obj[1])))
                    continue
                it = obj
                if it.id in ignore:
                    continue
                if it.created_seq > since:
                    changes.append("<t:Create>%s</t:Create>" % render_item(it, shape))
                elif it.last_change == "read":
                    changes.append('<t:ReadFlagChange><t:ItemId Id="%s" ChangeKey="%s"/><t:IsRead>%s'
                                   '</t:IsRead></t:ReadFlagChange>' % (
                                       xa(it.id), xa(it.change_key), "true" if it.is_read else "false"))
                else:
                    changes.append("<t:Update>%s</t:Update>" % render_item(it, shape))
            remaining = any(seq > new_since for seq, _k, _o in cands)
            if not cands:
                new_since = max(since, self.store._seq)
            state = self.encode_sync_state(f, new_since)
            self.srv.stats.inc("sync_changes", f.mailbox.address, len(changes))
            return [resp_msg("SyncFolderItems", "<m:SyncState>%s</m:SyncState><m:IncludesLastItemInRange>%s"
                             "</m:IncludesLastItemInRange><m:Changes>%s</m:Changes>" % (
                                 x(state), "false" if remaining else "true", "".join(changes)))]
        except RespError as e:
            return [resp_msg("SyncFolderItems", error=e)]

    def encode_sync_state(self, folder, seq):
        payload = json.dumps({"f": folder.id, "s": seq}, separators=(",", ":")).encode()
        mac = hmac.new(self.srv.sync_key, payload, hashlib.sha256).digest()[:16]
        return b64(b"\x01SYNC" + struct.pack(">H", len(payload)) + payload + mac)

    def decode_sync_state(self, s, folder):
        try:
            raw = base64.b64decode(s, validate=True)
            if not raw.startswith(b"\x01SYNC"):
                raise ValueError
            ln = struct.unpack(">H", raw[5:7])[0]
            payload, mac = raw[7:7 + ln], raw[7 + ln:]
            if not hmac.compare_digest(mac, hmac.new(self.srv.sync_key, payload, hashlib.sha256).digest()[:16]):
                raise ValueError
            d = json.loads(payload)
            if d["f"] != folder.id or not isinstance(d["s"], int) or d["s"] < 0:
                raise ValueError
            return d["s"]
        except (ValueError, KeyError, struct.error, binascii.Error, TypeError):
            raise RespError("ErrorInvalidSyncStateData")

    def op_CreateItem(self, el):
        disp = enum_attr(el, "MessageDisposition", ("SaveOnly", "SendOnly", "SendAndSaveCopy"), None,
                         "MessageDispositionType")
        saved = el.find(mq("SavedItemFolderId"))
        items = need(el, mq("Items"))
        out = []
        for msg in list(items):
            try:
                if local(msg.tag) != "Message":
                    raise RespError("ErrorInvalidRequest", "Only messages are supported by this stand-in.")
                if disp is None:
                    raise RespError("ErrorMessageDispositionRequired")
                mime = self.mime_of(msg)
                if len(mime) > self.srv.max_message:
                    raise RespError("ErrorMessageSizeExceeded")
                hdrs = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(mime)
                rcpts = [a for _n, a in email.utils.getaddresses(
                    [str(v) for h in ("To", "Cc", "Bcc") for v in (hdrs.get_all(h) or [])]) if "@" in a]
                if disp != "SaveOnly" and not rcpts:
                    raise RespError("ErrorInvalidRecipients")
                mb = self.acting
                if saved is not None and len(saved):
                    dest = self.folder_ref(saved[0])
                    mb = dest.mailbox
                else:
                    dest = mb.by_dist["drafts" if disp == "SaveOnly" else "sentitems"]
                frm = email.utils.parseaddr(str(hdrs.get("From", "")))[1]
                if not frm:
                    mime = ("From: <%s>\r\n" % mb.address).encode() + mime
                elif frm.lower() != mb.address.lower() and frm.lower() not in mb.send_as:
                    raise RespError("ErrorSendAsDenied")
                if disp == "SaveOnly":
                    it = self.store.deliver(mb, dest, mime, is_read=True)
                    out.append(resp_msg("CreateItem", '<m:Items><t:Message><t:ItemId Id="%s" ChangeKey="%s"/>'
                                        '</t:Message></m:Items>' % (xa(it.id), xa(it.change_key))))
                    continue
                rec = {"mailbox": mb.address, "disposition": disp, "recipients": rcpts,
                       "time": iso(now_utc()), "mime": mime, "item_id": None}
                if disp == "SendAndSaveCopy":
                    it = self.store.deliver(mb, dest, mime, is_read=True)
                    rec["item_id"] = it.id
                    rec["folder"] = dest.path()
                self.store.submissions.append(rec)
                self.srv.stats.inc("sent", mb.address)
                out.append(resp_msg("CreateItem", "<m:Items/>"))
            except RespError as e:
                out.append(resp_msg("CreateItem", error=e, error_tail="<m:Items/>"))
        return out

    def mime_of(self, msg):
        mc = msg.find(tq("MimeContent"))
        if mc is not None:
            try:
                return base64.b64decode((mc.text or "").strip(), validate=False)
            except (binascii.Error, ValueError):
                raise schema_fault("The 'MimeContent' element is invalid - not base64Binary.")
        m = email.message.EmailMessage()
        m["Subject"] = msg.findtext(tq("Subject")) or ""
        for fld, hdr in (("ToRecipients", "To"), ("CcRecipients", "Cc"), ("BccRecipients", "Bcc")):
            addrs = [e.text for e in msg.findall(tq(fld) + "/" + tq("Mailbox") + "/" + tq("EmailAddress")) if e.text]
            if addrs:
                m[hdr] = ", ".join(addrs)
        frm = msg.findtext(tq("From") + "/" + tq("Mailbox") + "/" + tq("EmailAddress"))
        if frm:
            m["From"] = frm
        m["Message-ID"] = email.utils.make_msgid(domain="standin.test")
        m["Date"] = email.utils.formatdate(localtime=False)
        body = msg.find(tq("Body"))
        if body is not None and body.get("BodyType") == "HTML":
            m.set_content(body.text or "", subtype="html")
        else:
            m.set_content(body.text if body is not None and body.text else "")
        return m.as_bytes(policy=email.policy.SMTP)

    def op_SendItem(self, el):
        save = el.get("SaveItemToFolder")
        if save is None:
            raise schema_fault("The required attribute 'SaveItemToFolder' is missing.")
        save = parse_bool(save, "SaveItemToFolder")
        ids = need(el, mq("ItemIds"))
        out = []
        for ref in list(ids):
            try:
                it = self.item_ref(ref)
                ck = ref.get("ChangeKey")
                if not ck:
                    raise RespError("ErrorChangeKeyRequiredForWriteOperations")
                if ck != it.change_key:
                    raise RespError("ErrorStaleObject", "The change key passed in the request does not "
                                    "match the current change key for the item.")
                hdrs = it.headers()
                rcpts = [a for _n, a in email.utils.getaddresses(
                    [str(v) for h in ("To", "Cc", "Bcc") for v in (hdrs.get_all(h) or [])]) if "@" in a]
                if not rcpts:
                    raise RespError("ErrorInvalidRecipients")
                mb = it.folder.mailbox
                rec = {"mailbox": mb.address, "disposition": "SendItem", "recipients": rcpts,
                       "time": iso(now_utc()), "mime": it.mime, "item_id": None}
                if save:
                    new = self.store.move(it, mb.by_dist["sentitems"])
                    rec["item_id"] = new.id
                else:
                    self.store.remove(it)
                self.store.submissions.append(rec)
                out.append(resp_msg("SendItem"))
            except RespError as e:
                out.append(resp_msg("SendItem", error=e))
        return out


# =========================================================================
# HTTP plumbing shared by the three servers
# =========================================================================

class BodyTooLarge(Exception):
    pass


class BaseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body are two writes: no 40 ms delayed-ACK stalls
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 120
    max_body = MAX_EWS_REQUEST

    def log_message(self, fmt, *args):  # quiet by default; requests logged by log_req
        if self.server.app.verbose:
            self.server.app.log("%s %s" % (self.address_string(), fmt % args))

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            data = bytearray()
            while True:
                line = self.rfile.readline(100)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                if len(data) + size > self.max_body:
                    raise BodyTooLarge()
                data += self.rfile.read(size)
                self.rfile.readline(3)
            return bytes(data)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0:
            raise ValueError("bad Content-Length")
        if n > self.max_body:
            raise BodyTooLarge()
        return self.rfile.read(n) if n else b""

    def send(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=(), close=False,
             pause=0.0):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if body or ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            if pause and len(body) > 1:
                # half the answer, a silence, then the rest (c_slow_answer)
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                time.sleep(pause)
                body = body[len(body) // 2:]
            self.wfile.write(body)
        self.server.app.stats.inc("http_status", "%s %d" % (self.server.kind, status))

    def send_json(self, status, obj, headers=()):
        self.send(status, json.dumps(obj), "application/json; charset=utf-8", headers)

    def body_or_error(self):
        try:
            return self.read_body()
        except BodyTooLarge:
            self.send(413, "request too large", close=True)
        except (ValueError, OSError):
            self.send(400, "bad request body", close=True)
        return None


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, app, kind, ssl_ctx=None):
        self.app = app
        self.kind = kind
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ssl_ctx is not None:
            # handshake later, in the handler's thread (do_handshake_on_connect=False)
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, socket.timeout, TimeoutError)):
            return
        self.app.log("error on %s connection from %s:\n%s" % (self.kind, client_address, traceback.format_exc()))


# =========================================================================
# EWS HTTP handler: authentication, SOAP envelope, versions, impersonation
# =========================================================================

class EwsHandler(BaseHandler):
    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(30)
            self.connection.do_handshake()
            self.connection.settimeout(self.timeout)
        self.ntlm_challenge = None      # pending NTLM challenge on this connection
        self.ntlm_scheme = None
        self.conn_principal = None      # NTLM-authenticated connection

    def do_GET(self):
        app = self.server.app
        if urllib.parse.urlsplit(self.path).path.lower() != "/ews/exchange.asmx":
            return self.send(404, "not found")
        self.body_or_error()
        p = self.authenticate(b"")
        if p is None:
            return
        self.send(200, "<html><body>Exchange Web Services stand-in</body></html>", "text/html; charset=utf-8")
        _ = app

    def do_POST(self):
        app = self.server.app
        if urllib.parse.urlsplit(self.path).path.lower() != "/ews/exchange.asmx":
            self.body_or_error()
            return self.send(404, "not found")
        if self.stall_upload():
            return
        body = self.body_or_error()
        if body is None:
            return
        if self.server.kind == "ews_http" and app.cfg.http_requires_ssl:
            # IIS default for /EWS: "Require SSL" (403.4)
            return self.send(403, "403.4 - SSL required.", "text/html; charset=utf-8")
        principal = self.authenticate(body)
        if principal is None:
            return
        status, payload = 200, b""
        self.op = "?"
        try:
            payload = self.soap(body, principal)
        except Fault as f:
            status, payload = 500, soap_fault(f)
            app.stats.inc("faults", f.code)
        except Exception:  # noqa: BLE001
            app.log("internal error:\n" + traceback.format_exc())
            status, payload = 500, soap_fault(Fault("ErrorInternalServerError",
                                                    "An internal server error occurred. The operation failed."))
        op = self.op
        app.stats.inc("operations", op)
        app.stats.inc("operations_by_auth", "%s %s" % (principal.scheme, op))
        self.send(status, payload, "text/xml; charset=utf-8", pause=app.slow_answer_for(op))
        if app.verbose:
            app.log("EWS %s %s by %s (%s) -> %d" % (op, self.server.kind, principal.name, principal.scheme, status))

    def stall_upload(self):
        """A stall asked for (c_stall) and this request big enough: reads
        AFTER bytes of its body, then nothing more for HOLD seconds, and
        drops the connection (a server that stops reading in the middle of
        a send; it never has the whole request, so nothing is sent)."""
        app = self.server.app
        n = int(self.headers.get("Content-Length") or 0)
        with app.inject_lock:
            s = app.stall
            if not s or s["count"] <= 0 or n < s["min_body"]:
                return False
            s["count"] -= 1
        app.stats.inc("stalled", "upload")
        self.rfile.read(min(n, s["after"]))
        try:    # (after the read: a small buffer would make that read crawl)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        except OSError:
            pass
        time.sleep(s["hold"])
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    # ------------------------------------------------------------- SOAP
    def soap(self, body, principal):
        app = self.server.app
        if b"<!DOCTYPE" in body[:4096].upper() or b"<!ENTITY" in body.upper():
            raise schema_fault("For security reasons DTD is prohibited in this XML document.")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise schema_fault("The request is not well-formed XML: %s" % e)
        if root.tag != "{%s}Envelope" % NS_S:
            raise schema_fault("The root element is not a SOAP 1.1 Envelope.")
        header = root.find("{%s}Header" % NS_S)
        sbody = root.find("{%s}Body" % NS_S)
        if sbody is None or len(sbody) == 0:
            raise schema_fault("The SOAP Body is missing or empty.")
        op_el = sbody[0]
        op = self.op = local(op_el.tag)
        # version header: only in the t: namespace; other namespaces are ignored
        req_version = "Exchange2007"
        imp = None
        if header is not None:
            rv = header.find(tq("RequestServerVersion"))
            if rv is not None:
                req_version = rv.get("Version")
                if req_version is None:
                    raise schema_fault("The required attribute 'Version' is missing.")
            imp = header.find(tq("ExchangeImpersonation"))
        newest, vinfo = SERVER_VERSIONS[app.cfg.server_version]
        if req_version not in REQUEST_VERSIONS or \
                REQUEST_VERSIONS.index(req_version) > REQUEST_VERSIONS.index(newest):
            app.stats.inc("version_refused", req_version)
            raise Fault("ErrorInvalidServerVersion")
        app.stats.inc("versions", req_version)
        backoff = app.injected(op, self)
        if backoff is not None:
            raise Fault("ErrorServerBusy", extra='<t:MessageXml xmlns:t="%s"><t:Value Name="BackOffMilliseconds">'
                        '%d</t:Value></t:MessageXml>' % (NS_T, backoff))
        if ns_of(op_el.tag) != NS_M:
            raise schema_fault("The element 'Body' in namespace '%s' has invalid child element '%s' in "
                               "namespace '%s'." % (NS_S, op, ns_of(op_el.tag)))
        acting = self.acting_mailbox(principal, imp)
        ews = Ews(app)
        out = ews.run(op_el, principal, acting, req_version)
        return soap_envelope(out, vinfo)

    def acting_mailbox(self, principal, imp):
        app = self.server.app
        store = app.store
        if imp is None:
            if principal.kind == "app":
                raise Fault("ErrorInvalidExchangeImpersonationHeaderData")
            mb = store.mailbox(principal.own_mailbox)
            if mb is None:
                raise Fault("ErrorNonExistentMailbox", "The user has no mailbox.")
            return mb
        sid = imp.find(tq("ConnectingSID"))
        addr = None
        if sid is not None:
            for tag in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
                v = sid.findtext(tq(tag))
                if v:
                    addr = v.strip()
                    break
        if not addr:
            raise Fault("ErrorInvalidExchangeImpersonationHeaderData",
                        "The impersonation header data is invalid.")
        if principal.kind == "app" and not self.headers.get("X-AnchorMailbox"):
            raise Fault("ErrorInvalidExchangeImpersonationHeaderData",
                        "The X-AnchorMailbox header must be present when impersonating with this type "
                        "of OAuth token.")
        mb = store.mailbox(addr)
        if mb is None:
            raise Fault("ErrorNonExistentMailbox")
        if principal.kind == "app":
            tok_tenant = principal.token["tenant"]
            if mb.tenant and mb.tenant.lower() != tok_tenant.lower():
                raise Fault("ErrorNonExistentMailbox")
            if not principal.may_access(mb.address):
                raise Fault("ErrorAccessDenied")
        elif not principal.may_impersonate(mb.address):
            raise Fault("ErrorImpersonateUserDenied")
        app.stats.inc("impersonated", mb.address)
        return mb

    # ------------------------------------------------------------- auth
    def challenge_headers(self, bearer_error=None, diag=None):
        app = self.server.app
        cfg = app.cfg
        hdrs = []
        host = (self.headers.get("Host") or "localhost").rsplit(":", 1)[0].strip("[]")
        for s in cfg.advertise:
            sl = s.lower()
            if sl == "negotiate" and "ntlm" in cfg.enabled:
                hdrs.append(("WWW-Authenticate", "Negotiate"))
            elif sl == "ntlm" and "ntlm" in cfg.enabled:
                hdrs.append(("WWW-Authenticate", "NTLM"))
            elif sl == "basic" and "basic" in cfg.enabled:
                hdrs.append(("WWW-Authenticate", 'Basic realm="%s"' % (
                    cfg.basic_realm if cfg.basic_realm is not None else host)))
            elif sl == "bearer" and "bearer" in cfg.enabled:
                v = ('Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
                     'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
                     'token_types="app_asserted_user_v1 service_asserted_app_v1", '
                     'authorization_uri="https://login.windows.net/common/oauth2/authorize"')
                if bearer_error:
                    v += ', error="%s"' % bearer_error
                hdrs.append(("WWW-Authenticate", v))
        if diag:
            hdrs.append(("x-ms-diagnostics", diag))
        return hdrs

    def deny(self, reason, bearer_error=None, diag=None):
        app = self.server.app
        app.stats.inc("auth_refused", reason)
        if app.verbose:
            app.log("401 %s" % reason)
        self.send(401, b"", None, self.challenge_headers(bearer_error, diag))
        return None

    def authenticate(self, body):
        app = self.server.app
        cfg = app.cfg
        authz = self.headers.get("Authorization")
        if not authz:
            if self.conn_principal is not None:
                return self.conn_principal
            return self.deny("no credentials")
        scheme, _, cred = authz.strip().partition(" ")
        scheme_l = scheme.lower()
        cred = cred.strip()
        if scheme_l in ("ntlm", "negotiate"):
            return self.auth_ntlm(scheme, cred)
        self.ntlm_challenge = None
        self.conn_principal = None
        if scheme_l == "basic":
            if "basic" not in cfg.enabled:
                return self.deny("basic disabled")
            try:
                user, _, pw = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return self.deny("basic unparsable")
            u = cfg.user_for(user)
            if u is None or "basic" not in [s.lower() for s in u.get("auth", ["basic", "ntlm"])] or \
                    not hmac.compare_digest(u["password"].encode(), pw.encode()):
                return self.deny("basic wrong user or password")
            app.stats.inc("auth", "basic")
            return Principal("user", u.get("upn") or u["name"], "basic", user=u)
        if scheme_l == "bearer":
            if "bearer" not in cfg.enabled:
                return self.deny("bearer disabled")
            rec = app.tokens.lookup(cred)
            if rec is None:
                return self.deny("bearer unknown token", "invalid_token",
                                 '2000001;reason="The token is invalid or could not be parsed.";'
                                 'error_category="invalid_token"')
            if rec["exp"] <= time.time():
                return self.deny("bearer expired", "invalid_token",
                                 '2000001;reason="The token has expired.";error_category="invalid_token"')
            host = (urllib.parse.urlsplit(rec["resource"]).hostname or "").lower()
            if host not in [(urllib.parse.urlsplit(a).hostname or "").lower() for a in cfg.audiences]:
                return self.deny("bearer audience", "invalid_token",
                                 '2000003;reason="The hostname component of the audience claim value is '
                                 'invalid. Expected \'%s\'. Actual \'%s\'.";error_category="invalid_resource"'
                                 % (urllib.parse.urlsplit(cfg.audiences[0]).hostname, host))
            a = cfg.app(rec["client_id"])
            if a is None or "full_access_as_app" not in rec["roles"]:
                return self.deny("bearer no full_access_as_app", "invalid_token",
                                 '2000008;reason="The token contains no permissions, or permissions can '
                                 'not be understood.";error_category="invalid_grant"')
            app.stats.inc("auth", "bearer")
            return Principal("app", a["client_id"], "bearer", app=a, token=rec)
        return self.deny("unknown scheme %s" % scheme)

    def auth_ntlm(self, scheme, cred):
        app = self.server.app
        cfg = app.cfg
        if "ntlm" not in cfg.enabled:
            return self.deny("ntlm disabled")
        try:
            blob = base64.b64decode(cred, validate=True)
            mtype = ntlm_parse(blob)
        except (binascii.Error, ValueError, NtlmError):
            # SPNEGO/Kerberos (or garbage): no KDC here
            self.ntlm_challenge = None
            return self.deny("%s token is not NTLMSSP" % scheme.lower())
        if mtype == 1:
            self.conn_principal = None
            try:
                cflags = ntlm_type1_flags(blob)
            except NtlmError:
                return self.deny("ntlm bad type 1")
            self.ntlm_challenge = secrets.token_bytes(8)
            self.ntlm_scheme = scheme
            t2 = ntlm_type2(cflags, self.ntlm_challenge, cfg.nb_domain, cfg.nb_server,
                            cfg.dns_domain, cfg.dns_server)
            app.stats.inc("ntlm", "type1")
            self.send(401, b"", None, [("WWW-Authenticate", "%s %s" % (scheme, b64(t2)))])
            return None
        if mtype == 3:
            challenge, self.ntlm_challenge = self.ntlm_challenge, None
            if challenge is None:
                app.stats.inc("ntlm", "type3 without challenge on this connection")
                return self.deny("ntlm type 3 without a challenge on this connection")
            try:
                m = ntlm_type3_parse(blob)
            except NtlmError:
                return self.deny("ntlm bad type 3")
            u = cfg.user_for(m["user"], m["domain"] or None)
            if u is None or "ntlm" not in [s.lower() for s in u.get("auth", ["basic", "ntlm"])]:
                return self.deny("ntlm unknown user or domain")
            if len(m["nt"]) == 24:
                app.stats.inc("ntlm", "v1 refused")
                return self.deny("ntlm v1 response refused (NTLMv2 required)")
            if not ntlmv2_verify(m["nt"], challenge, m["user"], m["domain"], u["password"]):
                return self.deny("ntlm wrong password")
            app.stats.inc("auth", "ntlm")
            app.stats.inc("ntlm", "type3 ok")
            self.conn_principal = Principal("user", u.get("upn") or u["name"], "ntlm", user=u)
            return self.conn_principal
        return self.deny("ntlm unexpected message type %d" % mtype)


# =========================================================================
# Token endpoint + introspection
# =========================================================================

def aad_error(status, error, code, text):
    now = now_utc()
    ts = now.strftime("%Y-%m-%d %H:%M:%SZ")
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    return status, {
        "error": error,
        "error_description": "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s" % (
            code, text, trace, corr, now.strftime("%Y-%m-%d %H:%M:%S.") + "%07dZ" % (now.microsecond * 10)),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": "https://login.microsoftonline.com/error?code=%d" % code,
    }


class TokenLogic:
    def __init__(self, app):
        self.app = app

    def token(self, method, path, headers, body):
        cfg = self.app.cfg
        parts = [p for p in urllib.parse.urlsplit(path).path.split("/") if p]
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            return 404, None
        tenant_s = urllib.parse.unquote(parts[0])
        if method != "POST":
            return aad_error(400, "invalid_request", 900561,
                             "The endpoint only accepts POST, OPTIONS requests. Received a %s request." % method)
        if tenant_s.lower() in ("common", "organizations", "consumers"):
            return aad_error(400, "invalid_request", 50059,
                             "No tenant-identifying information found in either the request or implied "
                             "by any provided credentials.")
        tenant = cfg.tenant(tenant_s)
        if tenant is None:
            return aad_error(400, "invalid_request", 90002,
                             "Tenant '%s' not found. Check to make sure you have the correct tenant ID and "
                             "are signing into the correct cloud. Check with your subscription administrator, "
                             "this may happen if there are no active subscriptions for the tenant." % tenant_s)
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'grant_type'.")
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            form = {}
        f = {k: v[0] for k, v in form.items()}
        basic_id = basic_secret = None
        authz = headers.get("Authorization") or ""
        if authz.lower().startswith("basic "):
            try:
                cid, _, sec = base64.b64decode(authz[6:].strip(), validate=True).decode().partition(":")
                basic_id, basic_secret = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(sec)
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        grant = f.get("grant_type")
        if not grant:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'grant_type'.")
        if grant != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type '%s'." % grant)
        client_id = f.get("client_id") or basic_id
        if not client_id:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'client_id'.")
        app = cfg.app(client_id)
        if app is None or cfg.tenant(app.get("tenant", "")) is not tenant:
            return aad_error(400, "unauthorized_client", 700016,
                             "Application with identifier '%s' was not found in the directory '%s'. This can "
                             "happen if the application has not been installed by the administrator of the "
                             "tenant or consented to by any user in the tenant. You may have sent your "
                             "authentication request to the wrong tenant." % (client_id, tenant.get("name", tenant_s)))
        secret = f.get("client_secret")
        if secret is None:
            secret = basic_secret
        if secret is None or secret == "":
            if f.get("client_assertion"):
                return aad_error(401, "invalid_client", 700027,
                                 "Client assertion failed signature validation.")
            return aad_error(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' "
                             "or 'client_secret'.")
        secrets_cfg = app.get("secrets") or [{"value": app.get("secret", "")}]
        match = [s for s in secrets_cfg if hmac.compare_digest(s["value"].encode(), secret.encode())]
        if not match:
            return aad_error(401, "invalid_client", 7000215,
                             "Invalid client secret provided. Ensure the secret being sent in the request is "
                             "the client secret value, not the client secret ID, for a secret added to app "
                             "'%s'." % app["client_id"])
        exp = match[0].get("expires")
        if exp and datetime.datetime.fromisoformat(exp.replace("Z", "+00:00")) < now_utc():
            return aad_error(401, "invalid_client", 7000222,
                             "The provided client secret keys for app '%s' are expired. Visit the Azure portal "
                             "to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
                             "using certificate credentials for added security: https://aka.ms/certCreds."
                             % app["client_id"])
        scope = f.get("scope")
        if scope is None or scope.strip() == "":
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'scope'.")
        scopes = scope.split()
        if len(scopes) > 1:
            return aad_error(400, "invalid_scope", 70011,
                             "The provided request must include a 'scope' input parameter. The provided value "
                             "for the input parameter 'scope' is not valid. The scope %s is not valid." % scope)
        sc = scopes[0]
        if not sc.endswith("/.default"):
            return aad_error(400, "invalid_scope", 1002012,
                             "The provided value for scope %s is not valid. Client credential flows must have a "
                             "scope value with /.default suffixed to the resource identifier (application ID "
                             "URI)." % sc)
        resource = sc[:-len("/.default")]
        if resource.rstrip("/") not in [r.rstrip("/") for r in cfg.resources]:
            return aad_error(400, "invalid_resource", 500011,
                             "The resource principal named %s was not found in the tenant named %s. This can "
                             "happen if the application has not been installed by the administrator of the "
                             "tenant or consented to by any user in the tenant. You might have sent your "
                             "authentication request to the wrong tenant." % (resource, tenant.get("name", tenant_s)))
        token, lifetime = self.app.tokens.issue(tenant, app, resource.rstrip("/"))
        self.app.stats.inc("tokens_issued", app["client_id"])
        return 200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                     "access_token": token}

    def introspect(self, method, path, headers, body):
        """RFC 7662-style, as Dovecot's oauth2 passdb calls it (introspection_mode post|get|auth)."""
        token = None
        if method == "POST":
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            token = (form.get("token") or [None])[0]
        if token is None:
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            token = (q.get("token") or q.get("access_token") or [None])[0]
        if token is None:
            authz = headers.get("Authorization") or ""
            if authz.lower().startswith("bearer "):
                token = authz[7:].strip()
        self.app.stats.inc("introspect", "request")
        rec = self.app.tokens.lookup(token) if token else None
        if rec is None or rec["exp"] <= time.time():
            self.app.stats.inc("introspect", "inactive")
            return 200, {"active": False}
        a = self.app.cfg.app(rec["client_id"]) or {}
        username = a.get("introspect_username") or (a.get("mailboxes") or [""])[0]
        self.app.stats.inc("introspect", "active")
        return 200, {"active": True, "username": username, "email": username,
                     "client_id": rec["client_id"], "token_type": "Bearer", "exp": int(rec["exp"]),
                     "aud": rec["resource"], "scope": rec["resource"] + "/.default",
                     "tid": rec["tenant"], "roles": " ".join(rec["roles"])}


class TokenHandler(BaseHandler):
    max_body = MAX_TOKEN_REQUEST

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(30)
            self.connection.do_handshake()
            self.connection.settimeout(self.timeout)

    def route(self, method):
        body = self.body_or_error() if method == "POST" else b""
        if body is None:
            return
        logic = TokenLogic(self.server.app)
        p = urllib.parse.urlsplit(self.path).path
        if p.rstrip("/") == "/introspect":
            status, obj = logic.introspect(method, self.path, self.headers, body)
        else:
            status, obj = logic.token(method, self.path, self.headers, body)
            if obj is not None and status != 200:
                self.server.app.stats.inc("token_errors", str(obj["error_codes"][0]))
        if obj is None:
            return self.send(404, "not found")
        self.send_json(status, obj, [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])

    def do_POST(self):
        self.route("POST")

    def do_GET(self):
        self.route("GET")


# =========================================================================
# Control API (plain HTTP, tests only)
# =========================================================================

class ControlHandler(BaseHandler):
    max_body = MAX_CONTROL_REQUEST

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, method):
        app = self.server.app
        body = self.body_or_error() if method == "POST" else b""
        if body is None:
            return
        u = urllib.parse.urlsplit(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        path = u.path.rstrip("/")
        if path == "/introspect":
            status, obj = TokenLogic(app).introspect(method, self.path, self.headers, body)
            return self.send_json(status, obj)
        if not path.startswith("/_control/"):
            return self.send(404, "not found")
        name = path[len("/_control/"):].replace("-", "_")
        fn = getattr(self, "c_" + name, None)
        if fn is None:
            return self.send_json(404, {"error": "no such control call: %s" % path})
        try:
            with app.store.lock:
                res = fn(method, q, body)
        except ControlError as e:
            return self.send_json(e.status, {"error": e.msg})
        except Exception as e:  # noqa: BLE001
            app.log("control error:\n" + traceback.format_exc())
            return self.send_json(500, {"error": repr(e)})
        if isinstance(res, tuple):
            status, ctype, data = res
            return self.send(status, data, ctype)
        return self.send_json(200, res)

    # helpers
    def mailbox(self, q):
        mb = self.server.app.store.mailbox(q.get("mailbox", ""))
        if mb is None:
            raise ControlError(404, "no such mailbox: %r" % q.get("mailbox"))
        return mb

    def folder(self, mb, q, default="inbox"):
        path = q.get("folder") or default
        f = mb.folder_by_path(path)
        if f is None:
            if q.get("create") in ("1", "true", "yes"):
                return self.server.app.store.add_folder(mb, path)
            raise ControlError(404, "no such folder: %r in %s" % (path, mb.address))
        return f

    @staticmethod
    def item_json(it, mime=False):
        d = {"id": it.id, "change_key": it.change_key, "is_read": it.is_read, "subject": it.subject,
             "message_id": it.message_id, "size": len(it.mime), "received": iso(it.received),
             "folder": it.folder.path(), "class": it.item_class}
        if mime:
            d["mime"] = it.mime.decode("utf-8", "surrogateescape").encode("utf-8", "surrogateescape").decode(
                "utf-8", "replace")
            d["mime_b64"] = b64(it.mime)
        return d

    # calls
    def c_health(self, method, q, body):
        return {"ok": True, "server_version": self.server.app.cfg.server_version}

    def c_deliver(self, method, q, body):
        if method != "POST":
            raise ControlError(405, "POST the RFC 822 message")
        mb = self.mailbox(q)
        f = self.folder(mb, q)
        it = self.server.app.store.deliver(mb, f, body, q.get("read") in ("1", "true"),
                                           q.get("class") or "IPM.Note")
        return self.item_json(it)

    def c_deliver_many(self, method, q, body):
        """JSON: [{"mailbox","folder","mime"|"mime_b64"|"path"}...] or
        {"mailbox","folder","messages":[str...]|"dir": PATH}."""
        if method != "POST":
            raise ControlError(405, "POST JSON")
        try:
            spec = json.loads(body or b"null")
        except ValueError:
            raise ControlError(400, "body is not JSON")
        jobs = []
        if isinstance(spec, dict):
            mbq = {"mailbox": spec.get("mailbox", q.get("mailbox", "")),
                   "folder": spec.get("folder", q.get("folder", "inbox")), "create": spec.get("create")}
            if "dir" in spec:
                d = spec["dir"]
                for n in sorted(os.listdir(d)):
                    p = os.path.join(d, n)
                    if os.path.isfile(p):
                        jobs.append((mbq, {"path": p}))
            for m in spec.get("messages", []):
                jobs.append((mbq, m if isinstance(m, dict) else {"mime": m}))
        elif isinstance(spec, list):
            for m in spec:
                jobs.append(({"mailbox": m.get("mailbox", q.get("mailbox", "")),
                              "folder": m.get("folder", q.get("folder", "inbox"))}, m))
        else:
            raise ControlError(400, "expected a JSON list or object")
        out = []
        store = self.server.app.store
        for mbq, m in jobs:
            mb = self.mailbox(mbq)
            f = self.folder(mb, mbq)
            if "path" in m:
                with open(m["path"], "rb") as fh:
                    raw = fh.read()
            elif "mime_b64" in m:
                raw = base64.b64decode(m["mime_b64"])
            else:
                raw = m["mime"].encode("utf-8", "surrogateescape")
            it = store.deliver(mb, f, raw, bool(m.get("read")))
            out.append({"id": it.id, "message_id": it.message_id})
        return {"delivered": len(out), "items": out}

    def c_items(self, method, q, body):
        mb = self.mailbox(q)
        f = self.folder(mb, q)
        mime = q.get("mime") in ("1", "true")
        return {"mailbox": mb.address, "folder": f.path(), "count": len(f.items),
                "unread": sum(1 for i in f.items.values() if not i.is_read),
                "items": [self.item_json(i, mime) for i in f.items.values()]}

    def c_item(self, method, q, body):
        it = self.server.app.store.items.get(q.get("id", ""))
        if it is None:
            raise ControlError(404, "no such item")
        if q.get("raw") in ("1", "true"):
            return 200, "message/rfc822", it.mime
        return self.item_json(it, True)

    def c_folders(self, method, q, body):
        mb = self.mailbox(q)
        return {"mailbox": mb.address, "folders": [
            {"path": f.path(), "name": f.name, "distinguished": f.dist, "id": f.id, "count": len(f.items)}
            for f in mb.folders.values()]}

    def c_create_folder(self, method, q, body):
        mb = self.mailbox(q)
        f = self.server.app.store.add_folder(mb, q.get("folder", ""))
        return {"path": f.path(), "id": f.id}

    def c_sent(self, method, q, body):
        mb = self.mailbox(q) if q.get("mailbox") else None
        out = []
        for rec in self.server.app.store.submissions:
            if mb is not None and rec["mailbox"].lower() != mb.address.lower():
                continue
            d = dict(rec)
            d["mime_b64"] = b64(rec["mime"])
            d["mime"] = rec["mime"].decode("utf-8", "replace")
            out.append(d)
        return {"count": len(out), "sent": out}

    def c_expire_tokens(self, method, q, body):
        return {"expired": self.server.app.tokens.expire_all()}

    def c_token_lifetime(self, method, q, body):
        if method == "POST":
            v = q.get("seconds")
            if v is None and body:
                v = json.loads(body).get("seconds")
            self.server.app.tokens.lifetime = int(v)
        return {"seconds": self.server.app.tokens.lifetime}

    def c_server_version(self, method, q, body):
        if method == "POST":
            v = q.get("value")
            if v not in SERVER_VERSIONS:
                raise ControlError(400, "unknown server version %r" % v)
            self.server.app.cfg.server_version = v
        return {"server_version": self.server.app.cfg.server_version}

    def c_auth(self, method, q, body):
        cfg = self.server.app.cfg
        if method == "POST":
            if "enabled" in q:
                cfg.enabled = [s.strip().lower() for s in q["enabled"].split(",") if s.strip()]
            if "advertise" in q:
                cfg.advertise = [s.strip() for s in q["advertise"].split(",") if s.strip()]
        return {"enabled": cfg.enabled, "advertise": cfg.advertise}

    def c_inject(self, method, q, body):
        """Next COUNT requests of OPERATION get an ErrorServerBusy fault,
        asking the client to wait BACKOFF ms (BackOffMilliseconds, 1000);
        with HANG=SECONDS they get no answer for that long instead (a
        server that goes silent), then the fault; with INTERIM=CODE (1xx)
        an interim answer of that code (102 Processing) comes first, as
        soon as the request is read, before that silence."""
        app = self.server.app
        with app.inject_lock:
            op = q.get("operation", "*")
            app.inject[op] = int(q.get("count", "1"))
            app.inject_backoff[op] = int(q.get("backoff", "1000"))
            app.inject_hang[op] = float(q.get("hang", "0"))
            interim = int(q.get("interim", "0"))
            app.inject_interim[op] = interim if 100 <= interim < 200 else 0
        return {"inject": dict(app.inject)}

    def c_slow_answer(self, method, q, body):
        """The next COUNT answers to OPERATION stop halfway through their
        body for PAUSE seconds, then end: a success (or fault) whose last
        bytes come late."""
        app = self.server.app
        with app.inject_lock:
            app.slow_answer[q.get("operation", "*")] = [int(q.get("count", "1")),
                                                        float(q.get("pause", "8"))]
        return {"slow_answer": dict(app.slow_answer)}

    def c_stall(self, method, q, body):
        """The next COUNT EWS requests with a body of MIN_BODY bytes or more
        are read for AFTER bytes only; then the server reads nothing more
        for HOLD seconds and drops the connection."""
        app = self.server.app
        with app.inject_lock:
            app.stall = {"count": int(q.get("count", "1")),
                         "min_body": int(q.get("min_body", "1000000")),
                         "after": int(q.get("after", "262144")),
                         "hold": float(q.get("hold", "30"))}
        return {"stall": dict(app.stall)}

    def c_stats(self, method, q, body):
        return self.server.app.stats.snapshot()

    def c_reset_stats(self, method, q, body):
        self.server.app.stats.reset()
        return {"ok": True}

    def c_reset(self, method, q, body):
        app = self.server.app
        app.store.build(app.cfg.data, app.cfg.tenant_of_address)
        app.stats.reset()
        with app.tokens.lock:
            app.tokens.tokens.clear()
        with app.inject_lock:
            app.inject.clear()
            app.stall = None
            app.slow_answer.clear()
        return {"ok": True}


class ControlError(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status
        self.msg = msg


# =========================================================================
# Application
# =========================================================================

class App:
    def __init__(self, args, config_data):
        self.verbose = args.verbose
        self.logf = open(args.log, "a", buffering=1) if args.log else sys.stderr
        self.log_lock = threading.Lock()
        self.cfg = Config(config_data, args)
        self.store = Store()
        self.store.build(config_data, self.cfg.tenant_of_address)
        self.stats = Stats()
        self.tokens = TokenStore(self.cfg.token_lifetime)
        self.sync_key = secrets.token_bytes(32)
        self.max_message = int(config_data.get("max_message_bytes", 35 * 1024 * 1024))
        self.inject = {}
        self.inject_backoff = {}
        self.inject_hang = {}
        self.inject_interim = {}
        self.stall = None           # c_stall: a stall while a request is read
        self.slow_answer = {}       # c_slow_answer: operation -> [count, pause]
        self.inject_lock = threading.Lock()
        self.servers = []

    def log(self, msg):
        with self.log_lock:
            self.logf.write("%s standin: %s\n" % (time.strftime("%H:%M:%S"), msg))
            self.logf.flush()

    def slow_answer_for(self, op):
        """The pause asked for in this answer to op (c_slow_answer), or 0."""
        with self.inject_lock:
            for k in (op, "*"):
                c = self.slow_answer.get(k)
                if c and c[0] > 0:
                    c[0] -= 1
                    self.stats.inc("slow_answers", op)
                    return c[1]
        return 0

    def injected(self, op, handler=None):
        """The BackOffMilliseconds of a fault injected for this request of
        op, or None when none is; first the interim answer (on handler's
        connection) and the silence asked for, if any."""
        hang = 0
        interim = 0
        backoff = None
        with self.inject_lock:
            for k in (op, "*"):
                if self.inject.get(k, 0) > 0:
                    self.inject[k] -= 1
                    backoff = self.inject_backoff.get(k, 1000)
                    hang = self.inject_hang.get(k, 0)
                    interim = self.inject_interim.get(k, 0)
                    break
        if interim and handler is not None:
            self.stats.inc("interim", op)
            handler.wfile.write(b"HTTP/1.1 %d Processing\r\n\r\n" % interim)
            handler.wfile.flush()
        if hang:
            self.stats.inc("hung", op)
            time.sleep(hang)
        return backoff


def main(argv=None):
    ap = argparse.ArgumentParser(description="EWS + Microsoft identity platform stand-in for tests")
    ap.add_argument("--config", required=True)
    ap.add_argument("--cert", help="server certificate (PEM) for the HTTPS ports")
    ap.add_argument("--key", help="its private key (PEM)")
    ap.add_argument("--server-version", choices=sorted(SERVER_VERSIONS))
    ap.add_argument("--token-lifetime", type=int)
    ap.add_argument("--ews-port", type=int)
    ap.add_argument("--ews-http-port", type=int, help="plain-HTTP EWS port (-1 = none)")
    ap.add_argument("--token-port", type=int)
    ap.add_argument("--control-port", type=int)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--state-dir", help="writes ports.json and pid here")
    ap.add_argument("--ports-file")
    ap.add_argument("--pid-file")
    ap.add_argument("--log")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    with open(args.config) as fh:
        data = json.load(fh)
    app = App(args, data)
    cfg = app.cfg
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
    elif cfg.ports["ews"] >= 0 or cfg.ports["token"] >= 0:
        raise SystemExit("--cert/--key are needed for the HTTPS ports (or set them to -1)")
    ports = {}
    spec = [("ews", EwsHandler, ctx), ("ews_http", EwsHandler, None),
            ("token", TokenHandler, ctx), ("control", ControlHandler, None)]
    for kind, handler, c in spec:
        port = cfg.ports[kind]
        if port is None or port < 0:
            continue
        srv = Server((args.bind, port), handler, app, kind, c)
        ports[kind] = srv.server_address[1]
        app.servers.append(srv)
    threads = []
    for srv in app.servers:
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                             name="serve-" + srv.kind, daemon=True)
        t.start()
        threads.append(t)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    info = dict(ports)
    info["pid"] = os.getpid()
    info["server_version"] = cfg.server_version
    files = []
    if args.state_dir:
        os.makedirs(args.state_dir, exist_ok=True)
        files = [(os.path.join(args.state_dir, "ports.json"), json.dumps(info) + "\n"),
                 (os.path.join(args.state_dir, "pid"), "%d\n" % os.getpid())]
    if args.ports_file:
        files.append((args.ports_file, json.dumps(info) + "\n"))
    if args.pid_file:
        files.append((args.pid_file, "%d\n" % os.getpid()))
    for path, text in files:
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    app.log("listening %s (server %s, pid %d)" % (
        " ".join("%s=%d" % kv for kv in ports.items()), cfg.server_version, os.getpid()))
    while not stop.wait(0.5):
        pass
    app.log("SIGTERM: shutting down")
    for srv in app.servers:
        srv.shutdown()
        srv.server_close()
    for path, _ in files:
        if path.endswith("pid") or path.endswith(".pid"):
            try:
                os.unlink(path)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
