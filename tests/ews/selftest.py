#!/usr/bin/env python3
"""tests/ews/selftest.py - end-to-end checks of the EWS stand-in (standin.py).

Usage: tests/ews/selftest.py [DIR]
  DIR holds the TLS files (DIR/tls/, made with tests/stack/lib.sh's
  cm_gen_certs when missing) and the stand-ins' state; default: a new temp
  folder, removed afterwards. Starts two stand-ins with tests/ews/start.sh
  (EWS_NAME=selftest-current: server version "current"; selftest-2010:
  --server-version 2010sp2), talks to them with http.client/ssl and curl,
  stops them with tests/ews/stop.sh. Prints "ok - ..." / "not ok - ...",
  then "N passed, N failed"; exits 1 on any failure.
"""
import base64
import hmac
import http.client
import json
import os
import re
import shutil
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import standin  # noqa: E402

NS_S, NS_M, NS_T = standin.NS_S, standin.NS_M, standin.NS_T
TENANT = "11111111-2222-3333-4444-555555555555"
APP = "aaaaaaaa-aaaa-4aaa-aaaa-aaaaaaaaaaaa"
APP_SECRET = "Ews~App~Secret~1"
NOROLE_APP, NOROLE_SECRET = "bbbbbbbb-bbbb-4bbb-bbbb-bbbbbbbbbbbb", "No~Role~Secret~2"
IMAP_APP, IMAP_SECRET = "cccccccc-cccc-4ccc-cccc-cccccccccccc", "Imap~App~Secret~3"
EXPIRED_APP, EXPIRED_SECRET = "dddddddd-dddd-4ddd-dddd-dddddddddddd", "Old~Secret~4"
SCOPE = "https://outlook.office365.com/.default"

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - " + name)
    else:
        failed += 1
        print("not ok - " + name + ((": " + str(detail)[:600]) if detail else ""))
    sys.stdout.flush()
    return bool(cond)


# ------------------------------------------------------------------ plumbing

class Inst:
    def __init__(self, envfile):
        self.env = {}
        for line in open(envfile):
            m = re.match(r"export (\w+)=(.*)$", line.strip())
            if m:
                self.env[m.group(1)] = m.group(2)
        self.port = int(self.env["EWS_PORT"])
        self.http_port = int(self.env["EWS_HTTP_PORT"])
        self.token_port = int(self.env["EWS_TOKEN_PORT"])
        self.control_port = int(self.env["EWS_CONTROL_PORT"])
        self.ca = self.env["EWS_CA_FILE"]
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def conn(self, kind="ews"):
        if kind == "ews":
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=20)
        if kind == "token":
            return http.client.HTTPSConnection("127.0.0.1", self.token_port, context=self.ctx, timeout=20)
        if kind == "http":
            return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=20)
        return http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=20)

    def control(self, method, path, body=None, **q):
        c = self.conn("control")
        url = "/_control/" + path + ("?" + urllib.parse.urlencode(q) if q else "")
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        c.request(method, url, body=body)
        r = c.getresponse()
        data = r.read()
        c.close()
        ctype = r.getheader("Content-Type", "")
        return r.status, (json.loads(data) if "json" in ctype else data)

    def ews(self, body, auth=None, headers=None, conn=None, kind="ews"):
        """-> (status, headers dict (lowercase, multi joined by \\n), body bytes)"""
        own = conn is None
        c = conn or self.conn(kind)
        h = {"Content-Type": "text/xml; charset=utf-8"}
        if auth:
            h["Authorization"] = auth
        h.update(headers or {})
        c.request("POST", "/EWS/Exchange.asmx", body=body if isinstance(body, bytes) else body.encode(), headers=h)
        r = c.getresponse()
        data = r.read()
        hd = {}
        for k, v in r.getheaders():
            hd[k.lower()] = (hd[k.lower()] + "\n" + v) if k.lower() in hd else v
        if own:
            c.close()
        return r.status, hd, data

    def token(self, form=None, tenant=TENANT, method="POST", headers=None, raw=None):
        c = self.conn("token")
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        body = raw if raw is not None else (urllib.parse.urlencode(form).encode() if form is not None else None)
        c.request(method, "/%s/oauth2/v2.0/token" % tenant, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data)


def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def soap(op, version="Exchange2010_SP2", imp=None, extra_header="", version_ns=NS_T):
    hdr = ""
    if version is not None:
        hdr += '<v:RequestServerVersion xmlns:v="%s" Version="%s"/>' % (version_ns, version)
    if imp:
        hdr += ('<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>%s</t:PrimarySmtpAddress>'
                '</t:ConnectingSID></t:ExchangeImpersonation>' % imp)
    hdr += extra_header
    return ('<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="%s" xmlns:m="%s" xmlns:t="%s">'
            '<s:Header>%s</s:Header><s:Body>%s</s:Body></s:Envelope>' % (NS_S, NS_M, NS_T, hdr, op))


def get_folder(fid='<t:DistinguishedFolderId Id="inbox"/>', shape="Default"):
    return ('<m:GetFolder><m:FolderShape><t:BaseShape>%s</t:BaseShape></m:FolderShape>'
            '<m:FolderIds>%s</m:FolderIds></m:GetFolder>' % (shape, fid))


def xml(data):
    return ET.fromstring(data)


def codes(data):
    try:
        return [e.text for e in xml(data).iter("{%s}ResponseCode" % NS_M)]
    except ET.ParseError:
        return ["<unparsable>"]


def fault(data):
    try:
        f = xml(data).find(".//{%s}Fault" % NS_S)
    except ET.ParseError:
        return None
    return f.findtext("faultcode") if f is not None else None


def item_ids(data, path=".//{%s}ItemId" % NS_T):
    return [(e.get("Id"), e.get("ChangeKey")) for e in xml(data).iterfind(path)]


def curl(*args):
    p = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}"] + list(args),
                       capture_output=True, timeout=30)
    out = p.stdout
    body, _, code = out.rpartition(b"\n")
    return int(code or 0), body, p.stderr.decode("utf-8", "replace")


# ------------------------------------------------------------ NTLM client

def ntlm_type1(unicode_=True):
    flags = 0x00000004 | 0x00000200 | 0x00008000 | 0x00080000 | (0x1 if unicode_ else 0x2)
    return b"NTLMSSP\x00" + struct.pack("<II", 1, flags) + b"\x00" * 16


def ntlm_type3(type2, user, domain, password, unicode_=True):
    challenge = type2[24:32]
    ln, _mx, off = struct.unpack("<HHI", type2[40:48])
    ti = type2[off:off + ln]
    cc = os.urandom(8)
    blob = b"\x01\x01" + b"\x00" * 6 + standin.filetime_now() + cc + b"\x00" * 4 + ti + b"\x00" * 4
    key = standin.ntowfv2(password, user, domain)
    nt = standin.hmac_md5(key, challenge + blob) + blob
    lm = standin.hmac_md5(key, challenge + cc) + cc
    enc = "utf-16-le" if unicode_ else "latin-1"
    fields = [lm, nt, domain.encode(enc), user.encode(enc), "SELFTEST".encode(enc), b""]
    off = 64
    head, payload = b"", b""
    for f in fields:
        head += struct.pack("<HHI", len(f), len(f), off + len(payload))
        payload += f
    flags = 0x00000200 | 0x00080000 | (0x1 if unicode_ else 0x2)
    return b"NTLMSSP\x00" + struct.pack("<I", 3) + head + struct.pack("<I", flags) + payload


def ntlm_handshake(inst, user, domain, password, unicode_=True, body=None, new_conn_for_type3=False):
    """-> (status of the type-3 request, connection, body)"""
    body = body or soap(get_folder())
    c = inst.conn()
    st, hd, _ = inst.ews(soap(get_folder()), "NTLM " + base64.b64encode(ntlm_type1(unicode_)).decode(), conn=c)
    if st != 401 or not hd.get("www-authenticate", "").startswith("NTLM "):
        return st, c, b"no challenge: %r" % hd
    t2 = base64.b64decode(hd["www-authenticate"].split(" ", 1)[1])
    t3 = "NTLM " + base64.b64encode(ntlm_type3(t2, user, domain, password, unicode_)).decode()
    if new_conn_for_type3:
        c.close()
        c = inst.conn()
    st, _hd, data = inst.ews(body, t3, conn=c)
    return st, c, data


# ------------------------------------------------------------------ tests

def test_vectors():
    vec = [(b"", "31d6cfe0d16ae931b73c59d7e0c089c0"), (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
           (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
           (b"message digest", "d9130a8164549fe818874806e1c7014b"),
           (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
           (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "043f8582f241db351ce627e153e7f0e4"),
           (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536")]
    check("MD4: the seven RFC 1320 test vectors", all(standin.md4(m).hex() == h for m, h in vec))
    check("NTOWFv1('Password') = a4f49c40... (MS-NLMP 4.2.2.1.2)",
          standin.ntowfv1("Password").hex() == "a4f49c406510bdcab6824ee7c30fd852")
    check("NTOWFv2('Password','User','Domain') = 0c868a40... (MS-NLMP 4.2.4.1.1)",
          standin.ntowfv2("Password", "User", "Domain").hex() == "0c868a403bfd7a93a3001ef22ef02e3f")
    temp = (b"\x01\x01" + b"\x00" * 6 + b"\x00" * 8 + b"\xaa" * 8 + b"\x00" * 4 +
            standin.av_pairs([(2, "Domain".encode("utf-16-le")), (1, "Server".encode("utf-16-le"))]) + b"\x00" * 4)
    proof = standin.hmac_md5(standin.ntowfv2("Password", "User", "Domain"),
                             bytes.fromhex("0123456789abcdef") + temp)
    check("NTProofStr = 68cd0ab8... (MS-NLMP 4.2.4.2.2)", proof.hex() == "68cd0ab851e51c96aabc927bebef6a1c")
    check("ntlmv2_verify accepts the MS-NLMP vector response",
          standin.ntlmv2_verify(proof + temp, bytes.fromhex("0123456789abcdef"), "User", "Domain", "Password"))
    check("ntlmv2_verify refuses it with another password",
          not standin.ntlmv2_verify(proof + temp, bytes.fromhex("0123456789abcdef"), "User", "Domain", "Passw0rd"))


def test_basic_ntlm(cur):
    url = "https://127.0.0.1:%d/EWS/Exchange.asmx" % cur.port
    body = soap(get_folder())
    common = ["--cacert", cur.ca, "-H", "Content-Type: text/xml; charset=utf-8", "--data-binary", body, url]
    st, out, err = curl("--basic", "-u", "CONTOSO\\ews2:ews2-pw-Secret1", *common)
    check("curl --basic CONTOSO\\ews2: 200 and NoError", st == 200 and codes(out) == ["NoError"], (st, out, err))
    st, out, _ = curl("--basic", "-u", "ews2@contoso.test:ews2-pw-Secret1", *common)
    check("curl --basic with the UPN: 200", st == 200, st)
    st, hd, _ = cur.ews(body, basic("CONTOSO\\ews2", "wrong"))
    ch = hd.get("www-authenticate", "").split("\n")
    check("Basic with a wrong password: 401", st == 401, st)
    check("401 advertises Negotiate, NTLM, Basic realm=\"127.0.0.1\" (IIS style)",
          "Negotiate" in ch and "NTLM" in ch and 'Basic realm="127.0.0.1"' in ch, ch)
    check("401 carries Content-Length", hd.get("content-length") == "0", hd)
    st, _hd, _ = cur.ews(body, basic("CONTOSO\\ews4", "ews4-pw-Secret1"))
    check("Basic for a user allowed only NTLM: 401", st == 401, st)
    st, _hd, _ = cur.ews(body)
    check("no Authorization: 401", st == 401, st)

    st, out, err = curl("--ntlm", "-u", "CONTOSO\\ews2:ews2-pw-Secret1", *common)
    check("curl --ntlm CONTOSO\\ews2 (NTLMv2, OEM strings): 200", st == 200 and codes(out) == ["NoError"], (st, err))
    st, out, _ = curl("--ntlm", "-u", "ews4@contoso.test:ews4-pw-Secret1", *common)
    check("curl --ntlm with a UPN user name: 200", st == 200, st)
    st, out, _ = curl("--ntlm", "-u", "contoso.test\\ews4:ews4-pw-Secret1", *common)
    check("curl --ntlm with the DNS domain name: 200", st == 200, st)
    st, out, _ = curl("--ntlm", "-u", "CONTOSO\\ews2:wrong-password", *common)
    check("curl --ntlm with a wrong password: 401", st == 401, st)
    st, out, _ = curl("--ntlm", "-u", "FABRIKAM\\ews2:ews2-pw-Secret1", *common)
    check("curl --ntlm with a wrong domain: 401", st == 401, st)
    st, out, _ = curl("--ntlm", "-u", "CONTOSO\\ews5:ews5-pw-Secret1", *common)
    check("curl --ntlm for a user allowed only Basic: 401", st == 401, st)

    st, c, data = ntlm_handshake(cur, "ews2", "CONTOSO", "ews2-pw-Secret1", unicode_=True)
    check("Python NTLM client (Unicode strings), type 1 and 3 on one connection: 200",
          st == 200 and codes(data) == ["NoError"], (st, data[:300]))
    st, _hd, data = cur.ews(soap(get_folder()), conn=c)
    check("later request on the authenticated connection needs no header: 200", st == 200, st)
    c.close()
    st, c, data = ntlm_handshake(cur, "ews2", "CONTOSO", "ews2-pw-Secret1", new_conn_for_type3=True)
    check("NTLM type 3 on a new TCP connection: refused with 401", st == 401, st)
    c.close()
    st, c, data = ntlm_handshake(cur, "EWS2", "contoso", "ews2-pw-Secret1")
    check("NTLM user and domain case-insensitive (hash over the names as sent): 200", st == 200, st)
    c.close()
    st, c, data = ntlm_handshake(cur, "ews2", "CONTOSO", "ews2-pw-Secret2")
    check("NTLM (Python client) wrong password: 401", st == 401, st)
    c.close()
    st, _hd, _ = cur.ews(soap(get_folder()), "Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg")
    check("Negotiate with a Kerberos/SPNEGO token (no KDC here): 401", st == 401, st)
    # plain HTTP port (--no-exchange-ssl)
    st, _hd, data = cur.ews(soap(get_folder()), basic("CONTOSO\\ews2", "ews2-pw-Secret1"), kind="http")
    check("plain-HTTP EWS port answers too", st == 200 and codes(data) == ["NoError"], st)


def aad_ok(name, st, js, want_status, want_error, want_code):
    desc = js.get("error_description", "")
    ok = (st == want_status and js.get("error") == want_error and js.get("error_codes") == [want_code]
          and desc.startswith("AADSTS%d: " % want_code) and "\r\nTrace ID: " in desc
          and "\r\nCorrelation ID: " in desc and "\r\nTimestamp: " in desc
          and js.get("trace_id") and js.get("correlation_id") and js.get("timestamp"))
    check("token endpoint: %s -> %d %s AADSTS%d" % (name, want_status, want_error, want_code), ok, (st, js))


def get_token(inst, client=APP, secret=APP_SECRET, scope=SCOPE, tenant=TENANT):
    st, js = inst.token({"client_id": client, "client_secret": secret, "scope": scope,
                         "grant_type": "client_credentials"}, tenant=tenant)
    return js.get("access_token"), st, js


def test_token_endpoint(cur):
    form = {"client_id": APP, "client_secret": APP_SECRET, "scope": SCOPE, "grant_type": "client_credentials"}
    st, js = cur.token(form)
    check("token endpoint: client credentials -> 200 Bearer with expires_in/ext_expires_in",
          st == 200 and js.get("token_type") == "Bearer" and js.get("expires_in") == 3599 and
          js.get("ext_expires_in") == 3599 and js.get("access_token") and "refresh_token" not in js, js)
    st, js = cur.token(form, tenant="contoso.test")
    check("token endpoint: tenant given as its domain name -> 200", st == 200, js)
    f2 = dict(form)
    del f2["client_secret"]
    auth = "Basic " + base64.b64encode(("%s:%s" % (urllib.parse.quote_plus(APP),
                                                    urllib.parse.quote_plus(APP_SECRET))).encode()).decode()
    st, js = cur.token(f2, headers={"Authorization": auth})
    check("token endpoint: secret as HTTP Basic (RFC 6749 2.3.1) -> 200", st == 200, js)
    aad_ok("wrong secret", *cur.token(dict(form, client_secret="nope")), 401, "invalid_client", 7000215)
    aad_ok("no secret", *cur.token(f2), 401, "invalid_client", 7000218)
    aad_ok("expired secret", *cur.token(dict(form, client_id=EXPIRED_APP, client_secret=EXPIRED_SECRET)),
           401, "invalid_client", 7000222)
    aad_ok("unknown client", *cur.token(dict(form, client_id="99999999-9999-4999-9999-999999999999")),
           400, "unauthorized_client", 700016)
    aad_ok("unknown tenant", *cur.token(form, tenant="fabrikam.test"), 400, "invalid_request", 90002)
    aad_ok("tenant 'common'", *cur.token(form, tenant="common"), 400, "invalid_request", 50059)
    aad_ok("tenant 'organizations'", *cur.token(form, tenant="organizations"), 400, "invalid_request", 50059)
    aad_ok("missing grant_type", *cur.token({k: v for k, v in form.items() if k != "grant_type"}),
           400, "invalid_request", 900144)
    aad_ok("missing scope", *cur.token({k: v for k, v in form.items() if k != "scope"}),
           400, "invalid_request", 900144)
    aad_ok("grant_type=password", *cur.token(dict(form, grant_type="password")),
           400, "unsupported_grant_type", 70003)
    aad_ok("scope without /.default", *cur.token(dict(form, scope="https://outlook.office365.com/EWS.AccessAsUser.All")),
           400, "invalid_scope", 1002012)
    aad_ok("two scopes", *cur.token(dict(form, scope=SCOPE + " https://graph.microsoft.com/.default")),
           400, "invalid_scope", 70011)
    aad_ok("resource of another cloud (outlook.office365.us)",
           *cur.token(dict(form, scope="https://outlook.office365.us/.default")), 400, "invalid_resource", 500011)
    aad_ok("GET", *cur.token(None, method="GET"), 400, "invalid_request", 900561)


def find_item(folder='<t:DistinguishedFolderId Id="inbox"/>', offset=0, maxn=100, view=None):
    if view is None:
        view = '<m:IndexedPageItemView MaxEntriesReturned="%d" Offset="%d" BasePoint="Beginning"/>' % (maxn, offset)
    return ('<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>%s'
            '<m:SortOrder><t:FieldOrder Order="Ascending"><t:FieldURI FieldURI="item:DateTimeReceived"/>'
            '</t:FieldOrder></m:SortOrder><m:ParentFolderIds>%s</m:ParentFolderIds></m:FindItem>' % (view, folder))


def test_bearer(cur):
    tok, st, js = get_token(cur)
    url = "https://127.0.0.1:%d/EWS/Exchange.asmx" % cur.port
    body = soap(get_folder(), imp="ews1@contoso.test")
    st, out, err = curl("--cacert", cur.ca, "-H", "Authorization: Bearer " + tok, "-H",
                        "X-AnchorMailbox: ews1@contoso.test", "-H", "Content-Type: text/xml; charset=utf-8",
                        "--data-binary", body, url)
    check("curl Bearer app token + ExchangeImpersonation + X-AnchorMailbox: 200 NoError",
          st == 200 and codes(out) == ["NoError"], (st, out[:300], err))
    anchor = {"X-AnchorMailbox": "ews1@contoso.test"}
    st, _hd, out = cur.ews(soap(get_folder()), "Bearer " + tok, anchor)
    check("app token without ExchangeImpersonation: 500 fault ErrorInvalidExchangeImpersonationHeaderData",
          st == 500 and fault(out) == "a:ErrorInvalidExchangeImpersonationHeaderData", (st, out[:400]))
    st, _hd, out = cur.ews(body, "Bearer " + tok)
    check("app token with impersonation but no X-AnchorMailbox: 500 fault",
          st == 500 and fault(out) == "a:ErrorInvalidExchangeImpersonationHeaderData", (st, out[:400]))
    st, _hd, out = cur.ews(soap(get_folder(), imp="nobody@contoso.test"), "Bearer " + tok,
                           {"X-AnchorMailbox": "nobody@contoso.test"})
    check("impersonating an unknown address: 500 fault ErrorNonExistentMailbox",
          st == 500 and fault(out) == "a:ErrorNonExistentMailbox", (st, out[:400]))
    st, _hd, out = cur.ews(soap(get_folder(), imp="restricted@contoso.test"), "Bearer " + tok,
                           {"X-AnchorMailbox": "restricted@contoso.test"})
    check("impersonating a mailbox outside the app's allowed list: 500 fault ErrorAccessDenied",
          st == 500 and fault(out) == "a:ErrorAccessDenied", (st, out[:400]))
    wrong_ns = ('<x:ExchangeImpersonation xmlns:x="urn:other"><x:ConnectingSID><x:PrimarySmtpAddress>'
                'ews1@contoso.test</x:PrimarySmtpAddress></x:ConnectingSID></x:ExchangeImpersonation>')
    st, _hd, out = cur.ews(soap(get_folder(), extra_header=wrong_ns), "Bearer " + tok, anchor)
    check("ExchangeImpersonation in a foreign namespace is ignored (so: fault)",
          st == 500 and fault(out) == "a:ErrorInvalidExchangeImpersonationHeaderData", st)
    sid = ('<t:ExchangeImpersonation><t:ConnectingSID><t:SmtpAddress>ews2@contoso.test</t:SmtpAddress>'
           '</t:ConnectingSID></t:ExchangeImpersonation>')
    st, _hd, out = cur.ews(soap(get_folder(), extra_header=sid), "Bearer " + tok,
                           {"X-AnchorMailbox": "ews2@contoso.test"})
    check("ConnectingSID/SmtpAddress works too", st == 200 and codes(out) == ["NoError"], (st, out[:300]))

    ntok, _, _ = get_token(cur, NOROLE_APP, NOROLE_SECRET)
    st, hd, _ = cur.ews(body, "Bearer " + ntok, anchor)
    check("app without full_access_as_app: 401 with x-ms-diagnostics 2000008",
          st == 401 and hd.get("x-ms-diagnostics", "").startswith("2000008;"), (st, hd))
    gtok, _, _ = get_token(cur, scope="https://graph.microsoft.com/.default")
    st, hd, _ = cur.ews(body, "Bearer " + gtok, anchor)
    check("token for Graph (audience not this host): 401 with x-ms-diagnostics 2000003 invalid_resource",
          st == 401 and hd.get("x-ms-diagnostics", "").startswith("2000003;") and
          "invalid_resource" in hd.get("x-ms-diagnostics", ""), (st, hd))
    ltok, _, _ = get_token(cur, scope="https://127.0.0.1/.default")
    st, _hd, out = cur.ews(body, "Bearer " + ltok, anchor)
    check("token for https://127.0.0.1 (the stand-in's own host) works", st == 200, st)
    st, hd, _ = cur.ews(body, "Bearer not-a-token", anchor)
    check("unknown token: 401 Bearer error=\"invalid_token\"",
          st == 401 and 'error="invalid_token"' in hd.get("www-authenticate", ""), hd)
    st, js = cur.control("POST", "expire-tokens")
    st, hd, _ = cur.ews(body, "Bearer " + tok, anchor)
    check("after /_control/expire-tokens: 401 with error=\"invalid_token\"",
          st == 401 and 'error="invalid_token"' in hd.get("www-authenticate", ""), (st, hd))
    cur.control("POST", "token-lifetime", seconds=1)
    stok, st, js = get_token(cur)
    check("short-lived token: expires_in follows the set lifetime", js.get("expires_in") == 1, js)
    st1, _hd, _ = cur.ews(body, "Bearer " + stok, anchor)
    time.sleep(1.3)
    st2, hd, _ = cur.ews(body, "Bearer " + stok, anchor)
    check("short-lived token works, then expires: 200 then 401 invalid_token",
          st1 == 200 and st2 == 401 and 'error="invalid_token"' in hd.get("www-authenticate", ""), (st1, st2))
    cur.control("POST", "token-lifetime", seconds=3599)

    # introspection for Dovecot's oauth2 passdb
    itok, _, _ = get_token(cur, IMAP_APP, IMAP_SECRET)
    c = cur.conn("token")
    c.request("POST", "/introspect", body="token=" + urllib.parse.quote(itok),
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    js = json.loads(r.read())
    c.close()
    check("introspection (mode post): active, username = the app's mailbox",
          r.status == 200 and js.get("active") is True and js.get("username") == "u20@example.test", js)
    c = cur.conn("token")
    c.request("GET", "/introspect?token=" + urllib.parse.quote(itok, safe=""))
    js = json.loads(c.getresponse().read())
    c.close()
    check("introspection (mode get, token appended to the URL): active", js.get("active") is True, js)
    c = cur.conn("control")
    c.request("GET", "/introspect", headers={"Authorization": "Bearer " + itok})
    js = json.loads(c.getresponse().read())
    c.close()
    check("introspection (mode auth, plain-HTTP port): active", js.get("active") is True, js)
    c = cur.conn("token")
    c.request("POST", "/introspect", body="token=bogus", headers={"Content-Type": "application/x-www-form-urlencoded"})
    js = json.loads(c.getresponse().read())
    c.close()
    check("introspection of an unknown token: {\"active\": false}", js == {"active": False}, js)


def test_versions(cur, old):
    auth = basic("CONTOSO\\ews1", "ews1-pw-Secret1")
    st, _hd, out = old.ews(soap(get_folder(), "Exchange2013"), auth)
    root = xml(out)
    det = root.find(".//detail")
    exact = (st == 500 and fault(out) == "a:ErrorInvalidServerVersion" and root.find("{%s}Header" % NS_S) is None and
             root.find(".//faultstring").text == "The specified server version is invalid." and
             det.findtext("{%s}ResponseCode" % standin.NS_E) == "ErrorInvalidServerVersion")
    check("2010 SP2 server, Exchange2013 requested: HTTP 500 fault ErrorInvalidServerVersion (no s:Header)", exact,
          (st, out[:500]))
    st, _hd, out = old.ews(soap(get_folder(), "Exchange2010_SP2"), auth)
    info = xml(out).find(".//{%s}ServerVersionInfo" % NS_T)
    check("2010 SP2 server accepts Exchange2010_SP2, answers ServerVersionInfo Version=Exchange2010_SP2",
          st == 200 and info is not None and info.get("Version") == "Exchange2010_SP2" and
          info.get("MajorVersion") == "14", (st, out[:400]))
    ok = True
    for v in ("Exchange2007", "Exchange2007_SP1", "Exchange2010", "Exchange2010_SP1"):
        st, _hd, out = old.ews(soap(get_folder(), v), auth)
        ok = ok and st == 200
    check("2010 SP2 server accepts Exchange2007 .. Exchange2010_SP1", ok)
    st, _hd, out = old.ews(soap(get_folder(), "Exchange2016"), auth)
    check("2010 SP2 server refuses Exchange2016", st == 500 and fault(out) == "a:ErrorInvalidServerVersion", st)
    st, _hd, out = cur.ews(soap(get_folder(), "Exchange2016"), auth)
    info = xml(out).find(".//{%s}ServerVersionInfo" % NS_T)
    check("current server accepts Exchange2016, reports Version=V2017_07_11",
          st == 200 and info.get("Version") == "V2017_07_11", (st, out[:300]))
    for v in ("Exchange2007_SP2", "Exchange2007_SP3", "V2017_07_11", "exchange2010", "Exchange2019"):
        st, _hd, out = cur.ews(soap(get_folder(), v), auth)
        check("current server refuses the non-schema value %s with the fault" % v,
              st == 500 and fault(out) == "a:ErrorInvalidServerVersion", st)
    cur.control("POST", "reset-stats")
    st, _hd, out = old.ews(soap(get_folder(), "Exchange2013", version_ns="urn:not-types"), auth)
    check("RequestServerVersion outside the t: namespace is ignored (runs as Exchange2007)",
          st == 200 and codes(out) == ["NoError"], (st, out[:300]))
    st, _hd, out = old.ews(soap(get_folder(), None), auth)
    check("no RequestServerVersion: runs (as Exchange2007)", st == 200, st)
    _, stats = old.control("GET", "stats")
    check("stats count the versions used", stats.get("versions", {}).get("Exchange2007", 0) >= 2, stats)


def deliver(inst, mailbox, n, prefix, folder="inbox"):
    ids = []
    for i in range(n):
        raw = ("From: Sender <sender@outside.test>\r\nTo: %s\r\nSubject: %s %d\r\n"
               "Message-ID: <%s.%d@outside.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\nbody %d\r\n"
               % (mailbox, prefix, i, prefix, i, i)).encode()
        st, js = inst.control("POST", "deliver", raw, mailbox=mailbox, folder=folder)
        ids.append(js["id"])
    return ids


def sync(state=None, mx=2, folder='<t:DistinguishedFolderId Id="inbox"/>'):
    st = "<m:SyncState>%s</m:SyncState>" % state if state else ""
    return ('<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId>%s'
            '</m:SyncFolderId>%s<m:MaxChangesReturned>%d</m:MaxChangesReturned><m:SyncScope>NormalItems'
            '</m:SyncScope></m:SyncFolderItems>' % (folder, st, mx))


def sync_parse(out):
    root = xml(out)
    state = root.findtext(".//{%s}SyncState" % NS_M)
    last = root.findtext(".//{%s}IncludesLastItemInRange" % NS_M)
    ch = root.find(".//{%s}Changes" % NS_M)
    changes = [(standin.local(c.tag), c.find(".//{%s}ItemId" % NS_T).get("Id")) for c in (ch if ch is not None else [])]
    return state, last, changes


def test_items(cur):
    cur.control("POST", "reset")
    mb = "ews3@contoso.test"
    auth = basic("CONTOSO\\ews3", "ews3-pw-Secret1")

    def call(op, **kw):
        return cur.ews(soap(op, **kw), auth)

    # default-namespace form (Microsoft's examples) and schema validation
    dflt = ('<?xml version="1.0"?><soap:Envelope xmlns:soap="%s"><soap:Header><RequestServerVersion xmlns="%s" '
            'Version="Exchange2010_SP2"/></soap:Header><soap:Body><GetFolder xmlns="%s"><FolderShape><BaseShape '
            'xmlns="%s">IdOnly</BaseShape></FolderShape><FolderIds><DistinguishedFolderId xmlns="%s" Id="sentitems"/>'
            '</FolderIds></GetFolder></soap:Body></soap:Envelope>' % (NS_S, NS_T, NS_M, NS_T, NS_T))
    st, _hd, out = cur.ews(dflt, auth)
    check("default-namespace request form is understood", st == 200 and codes(out) == ["NoError"], (st, out[:300]))
    st, _hd, out = call(get_folder('<t:DistinguishedFolderId Id="Inbox"/>'))
    check("DistinguishedFolderId Id=\"Inbox\" (wrong case): 500 ErrorSchemaValidation",
          st == 500 and fault(out) == "a:ErrorSchemaValidation" and b"DistinguishedFolderIdNameType" in out, st)
    st, _hd, out = call(get_folder('<t:FolderId Id="%s"/>' % standin.new_folder_id()))
    check("GetFolder of an unknown FolderId: ErrorFolderNotFound (HTTP 200, ResponseClass Error)",
          st == 200 and codes(out) == ["ErrorFolderNotFound"] and b'ResponseClass="Error"' in out and
          b"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>" in out and b"<m:MessageText>" in out, out[:400])
    st, _hd, out = call('<m:FindFolder Traversal="Deep"><m:FolderShape><t:BaseShape>Default</t:BaseShape>'
                        '</m:FolderShape><m:Restriction><t:IsEqualTo><t:FieldURI FieldURI="folder:DisplayName"/>'
                        '<t:FieldURIOrConstant><t:Constant Value="Processed"/></t:FieldURIOrConstant></t:IsEqualTo>'
                        '</m:Restriction><m:ParentFolderIds><t:DistinguishedFolderId Id="msgfolderroot"/>'
                        '</m:ParentFolderIds></m:FindFolder>')
    fids = [e.get("Id") for e in xml(out).iter("{%s}FolderId" % NS_T)]
    check("FindFolder by DisplayName 'Processed' under msgfolderroot: one folder", st == 200 and len(fids) == 1, out[:300])
    processed = fids[0] if fids else ""

    # SyncFolderItems paging with mail arriving between pages
    deliver(cur, mb, 3, "sync-a")
    st, _hd, out = call(sync(None, 2))
    s1, last1, ch1 = sync_parse(out)
    deliver(cur, mb, 2, "sync-b")
    st, _hd, out = call(sync(s1, 2))
    s2, last2, ch2 = sync_parse(out)
    st, _hd, out = call(sync(s2, 2))
    s3, last3, ch3 = sync_parse(out)
    allc = ch1 + ch2 + ch3
    check("SyncFolderItems pages of 2 with 2 messages arriving between pages: 5 distinct Creates, last page flagged",
          len(allc) == 5 and len({i for _k, i in allc}) == 5 and all(k == "Create" for k, _ in allc) and
          last1 == "false" and last3 == "true", (ch1, ch2, ch3, last1, last2, last3))
    st, _hd, out = call(sync(s3, 2))
    s4, last4, ch4 = sync_parse(out)
    check("SyncFolderItems with the final state: no changes, IncludesLastItemInRange true",
          ch4 == [] and last4 == "true", (ch4, last4))
    st, _hd, out = call(sync("AAAAbm90IGEgc3RhdGU=", 2))
    check("SyncFolderItems with a corrupt SyncState: ErrorInvalidSyncStateData",
          codes(out) == ["ErrorInvalidSyncStateData"], out[:300])
    st, _hd, out = call(sync(s4, 2, '<t:DistinguishedFolderId Id="sentitems"/>'))
    check("SyncState of another folder: ErrorInvalidSyncStateData", codes(out) == ["ErrorInvalidSyncStateData"])
    st, _hd, out = call(sync(None, 513))
    check("MaxChangesReturned 513: ErrorSchemaValidation fault", fault(out) == "a:ErrorSchemaValidation", out[:300])
    st, _hd, out = call(sync(None, 0))
    check("MaxChangesReturned 0: ErrorSchemaValidation fault", fault(out) == "a:ErrorSchemaValidation")

    # FindItem paging
    st, _hd, out = call(find_item(offset=0, maxn=2))
    rf = xml(out).find(".//{%s}RootFolder" % NS_M)
    page1 = item_ids(out)
    check("FindItem IndexedPageItemView page 1: 2 ids, IndexedPagingOffset 2, TotalItemsInView 5, not last",
          rf is not None and rf.get("IndexedPagingOffset") == "2" and rf.get("TotalItemsInView") == "5" and
          rf.get("IncludesLastItemInRange") == "false" and len(page1) == 2, out[:400])
    st, _hd, out = call(find_item(offset=4, maxn=2))
    rf = xml(out).find(".//{%s}RootFolder" % NS_M)
    check("FindItem last page: IncludesLastItemInRange true",
          rf.get("IncludesLastItemInRange") == "true" and len(item_ids(out)) == 1, out[:300])
    st, _hd, out = call(find_item(view='<m:IndexedPageItemView MaxEntriesReturned="10"/>'))
    check("IndexedPageItemView without Offset/BasePoint: ErrorSchemaValidation fault (required attributes)",
          st == 500 and fault(out) == "a:ErrorSchemaValidation", out[:300])
    st, _hd, out = call(find_item(view='<m:IndexedPageItemView MaxEntriesReturned="10" Offset="-1" '
                                       'BasePoint="Beginning"/>'))
    check("IndexedPageItemView Offset=-1: ErrorInvalidIndexedPagingParameters",
          codes(out) == ["ErrorInvalidIndexedPagingParameters"], out[:300])

    # GetItem MIME round trip
    raw = ("From: =?UTF-8?Q?J=C3=B6rg?= <jorg@outside.test>\r\nTo: %s\r\nSubject: MIME round trip \xe2\x9c\x93\r\n"
           "Message-ID: <roundtrip.1@outside.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "\r\nGr\xc3\xbc\xc3\x9fe\r\n" % mb).encode("latin-1")
    st, js = cur.control("POST", "deliver", raw, mailbox=mb, folder="inbox")
    iid = js["id"]
    ck = js["change_key"]
    gi = ('<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:IncludeMimeContent>true'
          '</t:IncludeMimeContent></m:ItemShape><m:ItemIds><t:ItemId Id="%s"/></m:ItemIds></m:GetItem>')
    st, _hd, out = call(gi % iid)
    mc = xml(out).find(".//{%s}MimeContent" % NS_T)
    check("GetItem IncludeMimeContent: base64 MimeContent CharacterSet=UTF-8, bytes identical",
          mc is not None and mc.get("CharacterSet") == "UTF-8" and base64.b64decode(mc.text) == raw, out[:300])
    gi2 = ('<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI '
           'FieldURI="item:MimeContent"/></t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id="%s"/>'
           '<t:ItemId Id="%s"/><t:ItemId Id="not*base64"/></m:ItemIds></m:GetItem>')
    st, _hd, out = call(gi2 % (iid, standin.new_item_id()))
    mc = xml(out).find(".//{%s}MimeContent" % NS_T)
    check("GetItem batch via AdditionalProperties item:MimeContent: NoError, ErrorItemNotFound, "
          "ErrorInvalidIdMalformed in order (HTTP 200)",
          st == 200 and codes(out) == ["NoError", "ErrorItemNotFound", "ErrorInvalidIdMalformed"] and
          base64.b64decode(mc.text) == raw, codes(out))

    # UpdateItem IsRead
    def upd(item, ckey, disp='MessageDisposition="SaveOnly" ', value="true"):
        ck_attr = ' ChangeKey="%s"' % ckey if ckey is not None else ""
        return ('<m:UpdateItem %sConflictResolution="AutoResolve"><m:ItemChanges><t:ItemChange>'
                '<t:ItemId Id="%s"%s/><t:Updates><t:SetItemField><t:FieldURI FieldURI="message:IsRead"/>'
                '<t:Message><t:IsRead>%s</t:IsRead></t:Message></t:SetItemField></t:Updates></t:ItemChange>'
                '</m:ItemChanges></m:UpdateItem>' % (disp, item, ck_attr, value))
    st, _hd, out = call(upd(iid, ck, disp=""))
    check("UpdateItem without MessageDisposition: ErrorMessageDispositionRequired",
          codes(out) == ["ErrorMessageDispositionRequired"], out[:300])
    st, _hd, out = call(upd(iid, None))
    check("UpdateItem without ChangeKey: ErrorChangeKeyRequiredForWriteOperations",
          codes(out) == ["ErrorChangeKeyRequiredForWriteOperations"], out[:300])
    st, _hd, out = call(upd(iid, "garbage!"))
    check("UpdateItem with a malformed ChangeKey: ErrorInvalidChangeKey", codes(out) == ["ErrorInvalidChangeKey"])
    st, _hd, out = call(upd(iid, ck))
    new = item_ids(out)
    cr = xml(out).findtext(".//{%s}ConflictResults/{%s}Count" % (NS_M, NS_T))
    check("UpdateItem IsRead with the current ChangeKey: NoError, new ChangeKey, ConflictResults 0",
          codes(out) == ["NoError"] and new and new[0][0] == iid and new[0][1] != ck and cr == "0", out[:400])
    st, js = cur.control("GET", "items", mailbox=mb, folder="inbox")
    check("control API shows the item read", [i["is_read"] for i in js["items"] if i["id"] == iid] == [True])
    st, _hd, out = call(upd(iid, ck, value="false"))
    check("UpdateItem with the stale ChangeKey: ErrorIrresolvableConflict", codes(out) == ["ErrorIrresolvableConflict"])
    st, _hd, out = call(sync(s4, 10))
    _s5, _l, ch5 = sync_parse(out)
    check("SyncFolderItems reports the new item (Create) after the read flag change",
          ("Create", iid) in ch5, ch5)

    # MoveItem
    mv = ('<m:MoveItem><m:ToFolderId><t:FolderId Id="%s"/></m:ToFolderId><m:ItemIds><t:ItemId Id="%s"/>'
          '</m:ItemIds></m:MoveItem>' % (processed, iid))
    st, _hd, out = call(mv)
    moved = item_ids(out)
    check("MoveItem to Processed: NoError with a new ItemId", codes(out) == ["NoError"] and moved and
          moved[0][0] != iid, out[:300])
    st, _hd, out = call(gi % iid)
    check("GetItem of the old id after MoveItem: ErrorItemNotFound", codes(out) == ["ErrorItemNotFound"])
    st, _hd, out = call(gi % moved[0][0])
    mc = xml(out).find(".//{%s}MimeContent" % NS_T)
    check("GetItem of the new id: same MIME", mc is not None and base64.b64decode(mc.text) == raw)
    st, js = cur.control("GET", "items", mailbox=mb, folder="Processed")
    check("control API lists it in Processed, still read",
          [(i["id"], i["is_read"], i["message_id"]) for i in js["items"]] ==
          [(moved[0][0], True, "<roundtrip.1@outside.test>")], js)
    st, _hd, out = call(sync(_s5, 10))
    _s6, _l, ch6 = sync_parse(out)
    check("SyncFolderItems on inbox reports the move as Delete of the old id", ("Delete", iid) in ch6, ch6)
    st, _hd, out = call(mv)
    check("MoveItem of the old id again: ErrorItemNotFound", codes(out) == ["ErrorItemNotFound"])

    # DeleteItem
    victim = page1[0][0]
    st, _hd, out = call('<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="%s"/></m:ItemIds>'
                        '</m:DeleteItem>' % victim)
    st2, _hd, out2 = call(gi % victim)
    check("DeleteItem HardDelete: NoError, then ErrorItemNotFound",
          codes(out) == ["NoError"] and codes(out2) == ["ErrorItemNotFound"], (out[:200], out2[:200]))

    # delegate access and access denied
    fi_other = find_item('<t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>ews4@contoso.test'
                         '</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>')
    st, _hd, out = call(fi_other)
    check("ews3 (delegate of ews4) reads ews4's inbox via t:Mailbox: NoError", codes(out) == ["NoError"], out[:300])
    st, _hd, out = cur.ews(soap(fi_other), basic("CONTOSO\\ews2", "ews2-pw-Secret1"))
    check("ews2 (no rights) reading ews4's inbox: ErrorAccessDenied", codes(out) == ["ErrorAccessDenied"], out[:300])
    st, _hd, out = cur.ews(soap(get_folder(), imp="ews1@contoso.test"), basic("CONTOSO\\ews2", "ews2-pw-Secret1"))
    check("user without the impersonation right sending ExchangeImpersonation: fault ErrorImpersonateUserDenied",
          st == 500 and fault(out) == "a:ErrorImpersonateUserDenied", out[:300])
    st, _hd, out = cur.ews(soap(get_folder(), imp="ews1@contoso.test"),
                           basic("CONTOSO\\svc-impersonator", "svc-pw-Secret1"))
    check("service account with the impersonation right: NoError", st == 200 and codes(out) == ["NoError"], out[:300])


def test_send(cur):
    mb = "ews1@contoso.test"
    tok, _, _ = get_token(cur)
    auth = "Bearer " + tok
    hdr = {"X-AnchorMailbox": mb}
    mime = ("From: Case Desk <ews1@contoso.test>\r\nTo: Reporter <reporter@outside.test>\r\n"
            "Bcc: audit@outside.test\r\nSubject: [CASE-7] Re: phishing\r\n"
            "Message-ID: <case7.reply.1@casemail.test>\r\nIn-Reply-To: <orig@outside.test>\r\n"
            "References: <orig@outside.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            "--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"e.bin\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b1--\r\n").encode()

    def create(m, disp='MessageDisposition="SendAndSaveCopy"'):
        return ('<m:CreateItem %s><m:SavedItemFolderId><t:DistinguishedFolderId Id="sentitems"/>'
                '</m:SavedItemFolderId><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">%s</t:MimeContent>'
                '</t:Message></m:Items></m:CreateItem>' % (disp, base64.b64encode(m).decode()))
    st, _hd, out = cur.ews(soap(create(mime), imp=mb), auth, hdr)
    items = xml(out).find(".//{%s}Items" % NS_M) if st == 200 else None
    check("CreateItem SendAndSaveCopy + MimeContent: NoError with an empty <m:Items/> (no ItemId)",
          st == 200 and codes(out) == ["NoError"] and items is not None and len(items) == 0 and
          b"<m:Items/>" in out, out[:400])
    st, js = cur.control("GET", "items", mailbox=mb, folder="sentitems", mime=1)
    found = [i for i in js["items"] if i["message_id"] == "<case7.reply.1@casemail.test>"]
    check("the sent message is stored in sentitems with the same bytes (Bcc, attachment, threading headers)",
          len(found) == 1 and base64.b64decode(found[0]["mime_b64"]) == mime, js)
    st, js = cur.control("GET", "sent", mailbox=mb)
    check("control API /sent records envelope recipients incl. Bcc",
          js["count"] >= 1 and sorted(js["sent"][-1]["recipients"]) == ["audit@outside.test", "reporter@outside.test"],
          js.get("sent", [{}])[-1].get("recipients"))
    st, _hd, out = cur.ews(soap(create(mime, ""), imp=mb), auth, hdr)
    check("CreateItem without MessageDisposition: ErrorMessageDispositionRequired",
          codes(out) == ["ErrorMessageDispositionRequired"], out[:300])
    norcpt = b"From: ews1@contoso.test\r\nSubject: nobody\r\nMessage-ID: <n.1@casemail.test>\r\n\r\nx\r\n"
    st, _hd, out = cur.ews(soap(create(norcpt), imp=mb), auth, hdr)
    check("CreateItem SendAndSaveCopy of a MIME without To/Cc/Bcc: ErrorInvalidRecipients",
          codes(out) == ["ErrorInvalidRecipients"], out[:300])
    other = mime.replace(b"From: Case Desk <ews1@contoso.test>", b"From: ceo@contoso.test")
    st, _hd, out = cur.ews(soap(create(other), imp=mb), auth, hdr)
    check("CreateItem with From another address: ErrorSendAsDenied", codes(out) == ["ErrorSendAsDenied"], out[:300])


def test_control_and_misc(cur):
    cur.control("POST", "inject", operation="GetFolder", count=1)
    auth = basic("CONTOSO\\ews1", "ews1-pw-Secret1")
    st, _hd, out = cur.ews(soap(get_folder()), auth)
    st2, _hd, out2 = cur.ews(soap(get_folder()), auth)
    check("injected ErrorServerBusy fault with BackOffMilliseconds, then normal again",
          st == 500 and fault(out) == "a:ErrorServerBusy" and b"BackOffMilliseconds" in out and st2 == 200, out[:300])
    st, js = cur.control("POST", "deliver-many", {"mailbox": "ews5@contoso.test", "folder": "Archive/2024",
                                                  "messages": ["Subject: a\r\n\r\nx", "Subject: b\r\n\r\ny"]})
    st2, js2 = cur.control("GET", "items", mailbox="ews5@contoso.test", folder="Archive/2024")
    check("control deliver-many into a nested folder", js.get("delivered") == 2 and js2.get("count") == 2, (js, js2))
    cur.control("POST", "reset-stats")
    url = "https://127.0.0.1:%d/EWS/Exchange.asmx" % cur.port
    curl("--ntlm", "-u", "CONTOSO\\ews2:ews2-pw-Secret1", "--cacert", cur.ca, "--data-binary", soap(get_folder()), url)
    cur.ews(soap(get_folder()), auth)
    tok, _, _ = get_token(cur)
    cur.ews(soap(get_folder(), imp="ews1@contoso.test"), "Bearer " + tok, {"X-AnchorMailbox": "ews1@contoso.test"})
    st, js = cur.control("GET", "stats")
    check("control stats count operations and auth schemes",
          js.get("operations", {}).get("GetFolder", 0) > 0 and js.get("auth", {}).get("ntlm", 0) > 0 and
          js.get("auth", {}).get("bearer", 0) > 0 and js.get("auth", {}).get("basic", 0) > 0, js)
    st, _hd, out = cur.ews(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x/>', auth)
    check("a DTD in the request is refused (schema fault)", st == 500 and fault(out) == "a:ErrorSchemaValidation")
    st, _hd, out = cur.ews(soap("<m:NoSuchOperation/>"), auth)
    check("unknown operation: ErrorSchemaValidation fault", st == 500 and fault(out) == "a:ErrorSchemaValidation")
    c = cur.conn()
    c.putrequest("POST", "/EWS/Exchange.asmx")
    c.putheader("Content-Length", str(standin.MAX_EWS_REQUEST + 1))
    c.putheader("Authorization", auth)
    c.endheaders()
    r = c.getresponse()
    check("a request above the size bound: 413", r.status == 413, r.status)
    c.close()


def main():
    top = os.path.dirname(os.path.dirname(HERE))
    own = len(sys.argv) < 2
    d = tempfile.mkdtemp(prefix="ews-selftest.") if own else os.path.abspath(sys.argv[1])
    env_cur = dict(os.environ, EWS_NAME="selftest-current")
    env_old = dict(os.environ, EWS_NAME="selftest-2010")
    start = os.path.join(HERE, "start.sh")
    stop = os.path.join(HERE, "stop.sh")
    started = []
    try:
        test_vectors()
        for env, extra in ((env_cur, []), (env_old, ["--server-version", "2010sp2"])):
            p = subprocess.run([start, d, os.path.join(HERE, "config.json")] + extra, env=env,
                               capture_output=True, text=True, timeout=60)
            if not check("start.sh %s" % env["EWS_NAME"], p.returncode == 0, p.stderr):
                return 1
            started.append(env)
        cur = Inst(os.path.join(d, "selftest-current.env"))
        old = Inst(os.path.join(d, "selftest-2010.env"))
        for fn, args in ((test_basic_ntlm, (cur,)), (test_token_endpoint, (cur,)), (test_bearer, (cur,)),
                         (test_versions, (cur, old)), (test_items, (cur,)), (test_send, (cur,)),
                         (test_control_and_misc, (cur,))):
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001
                import traceback
                check("%s ran to the end" % fn.__name__, False, traceback.format_exc())
                _ = e
        pid = cur.env["EWS_PID"]
        subprocess.run([stop, d], env=env_cur, timeout=30)
        started.remove(env_cur)
        gone = not os.path.exists("/proc/%s" % pid) or open("/proc/%s/stat" % pid).read().split(") ")[1][0] == "Z"
        check("stop.sh stops the stand-in (SIGTERM, by pid)", gone)
    finally:
        for env in started:
            subprocess.run([stop, d], env=env, timeout=30)
        if own:
            shutil.rmtree(d, ignore_errors=True)
        _ = top
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
