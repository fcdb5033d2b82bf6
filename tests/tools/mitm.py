#!/usr/bin/env python3
"""tests/tools/mitm.py: a man in the middle on loopback, for TLS tests.

    mitm.py --listen HOST:PORT --upstream HOST:PORT --mode MODE --log FILE

Modes:
  strip-imap  removes STARTTLS from IMAP CAPABILITY answers (greeting,
              untagged CAPABILITY, [CAPABILITY ...] codes) and answers a
              STARTTLS command with BAD itself, so the server never sees it
  strip-smtp  removes STARTTLS from the SMTP EHLO answer and answers a
              STARTTLS command with 454 itself
  plain       forwards bytes unchanged (e.g. to present a certificate under
              a host name it was not issued for)
  huge-uidnext  IMAP in clear, each [UIDNEXT n] made 2^64 - 1 (not an IMAP
              UIDNEXT: a broken or hostile server)
  bad-size    IMAP in clear, each RFC822.SIZE n in a FETCH answer made n + 7
              (a server whose announced sizes are not its messages')
  changing    as bad-size, and every second message body a connection
              carries (BODY[] literal) has the case of its first letter
              changed: the same length, other bytes (a confused connection)
In the IMAP modes a literal's bytes are passed through as they are
(read by their count), so no line of a message is taken for an answer.
  create-race IMAP in clear, the server's OK to a CREATE made
              NO [ALREADYEXISTS] (the folder is made: as if another client
              had made it a moment before)
  odd-flags   IMAP in clear, FLAGS in every FETCH answer made to hold NIL
              (an atom there) and a keyword of 300 characters (RFC 3501
              sets keywords no length), as another client may have set
  no-uid      IMAP in clear, the UID item taken out of every FETCH answer
              that carries RFC822.SIZE: an answer the client cannot match
              to the message it asked about
  refuse-fetch-star  IMAP in clear, "FETCH * (UID)" (the last message's
              UID) answered NO by the proxy itself, as a server that will
              not take "*" there
  latin1-smtp SMTP in clear, the server's "250 2.0.0 Ok: queued as ..." after
              the data made "250 2.0.0 Ok: re\xe7u, queued as ...": Latin-1
              bytes, not UTF-8, as a localised server sends
  slow-dot    SMTP in clear, the server's answer to the end of the data
              (the line ".") held back MITM_DOT_DELAY seconds (130), as a
              server that scans content before it answers
  defer-rcpt  SMTP in clear, the first RCPT TO of each address that starts
              with "later-" answered "452 4.2.2 Mailbox full" by the proxy
              itself (the server never sees it); later ones pass, as a
              recipient whose mailbox is full for a while
  stall-smtp  SMTP in clear, a server that stops answering: the proxy
              holds back commands (neither forwarded nor answered, the
              connection left open). RCPT TO of an address that starts with
              "hold-": answered "452 4.2.2 Mailbox full" the first time,
              held back the second and third time, passed on after that;
              DATA of a transaction with a recipient that starts with
              "stalldata-": held back the first time, passed on after that;
              DATA of one with a recipient that starts with "stallbody-":
              passed on, but the first two times the proxy then stops reading
              from the client (its receive buffer cut to 64 KB), so a
              message bigger than the socket buffers cannot be sent; after
              MITM_BODY_HOLD seconds (30) it drops that connection, the
              server never having had the end of the data
  preauth     IMAP in clear, the server's "* OK" greeting made "* PREAUTH"
              (its CAPABILITY code, STARTTLS included, kept), as a server
              that knows its client before a word is said; the client's
              first command goes on to the server, which answers it as one
              that wants a login
  end-idle    IMAP in clear, every IDLE ended by the server MITM_IDLE_END
              seconds (2) after it began (the proxy sends the server DONE itself, so the
              client gets the tagged answer without asking), as servers
              with their own IDLE time limit do
  rev2        IMAP in clear, a server that speaks IMAP4rev2 only (RFC 9051):
              IMAP4rev1 in its capabilities made IMAP4rev2, every SEARCH
              answer an ESEARCH one ("* ESEARCH (TAG "t") UID ALL 3:5,9",
              no ALL when nothing matched) and no RECENT answers
  bad-esearch as rev2, but while the file MITM_DAMAGE names exists, each
              ALL set is damaged: its highest UID, then its lowest and
              "*" ("* ESEARCH (TAG "t") UID ALL 12,3:*"), which a parser
              that keeps what it read before "*" takes for UID 12 alone
  chatty      IMAP in clear, untagged news in the middle of answers, as a
              server sends what other clients did: before every second
              message body (BODY[] literal) of all connections a flag change
              of message 1 ("* 1 FETCH (FLAGS (\\Seen \\Flagged))"), and before
              every tagged answer to UID SEARCH or UID FETCH "* 1 FETCH
              (FLAGS (\\Seen))" and the EXISTS count again
  no-uidnext  IMAP in clear, the "* OK [UIDNEXT n]" answer to SELECT and
              EXAMINE taken out, as a server that does not predict UIDs
  login-only  IMAP in clear, the AUTH= capabilities (SASL) taken out and
              AUTHENTICATE answered NO by the proxy itself: a server that
              takes only the LOGIN command
  refuse-list IMAP in clear, a LIST of a folder whose name starts with
              "Refused" answered NO by the proxy itself (the server never
              sees it), as a server that will not list a folder
  session-limit  IMAP in clear, a server that allows MITM_SESSIONS (2)
              connections at once per user: a LOGIN or AUTHENTICATE on a
              connection while more are open is answered "NO [LIMIT]
              Maximum number of connections from user+IP exceeded" by the
              proxy itself (Dovecot's words for mail_max_userip_connections)
Every byte the client sends is appended to the log file, so a test can
prove that nothing (no LOGIN, no AUTH, no mail) went out in clear.
Stops on SIGTERM. Writes its pid to --pid FILE when given.
"""
import argparse, asyncio, os, re, signal, socket, sys

def strip_imap(line: bytes) -> bytes:
    return re.sub(rb" STARTTLS(?=[ \]\r])", b"", line)

def uid_set(uids):
    """rev2: UIDs as a compact IMAP set, in the server's order ("3:5,9")."""
    nums, out = sorted(int(u) for u in uids), []
    for n in nums:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in out)

CHATTY = [0]           # chatty: message bodies seen on all connections
OPEN = [0]             # session-limit: client connections open
DEFERRED = set()       # defer-rcpt: the addresses refused once already
STALLS = {}            # stall-smtp: RCPT TO per address; DATA held per address

async def pipe_client(reader, writer, log, mode, server_writer, inject, creates, idle):
    while True:
        line = await reader.readline()
        if not line:
            break
        with open(log, "ab") as f:
            f.write(line)
        m = re.match(rb"^(\S+) CREATE ", line, re.I)
        if m:
            creates.add(m.group(1))
        m = re.match(rb"^(\S+) FETCH \* ", line, re.I)
        if mode == "refuse-fetch-star" and m:
            inject(m.group(1) + b" NO FETCH * not supported here\r\n")
            continue
        if mode == "slow-dot" and line in (b".\r\n", b".\n"):
            idle["dot"] = True
        if mode == "end-idle":
            m = re.match(rb"^(\S+) IDLE\r?\n$", line, re.I)
            if m:
                idle["tag"] = m.group(1)
                async def end_later(tag=m.group(1)):
                    await asyncio.sleep(float(os.environ.get("MITM_IDLE_END", "2")))
                    if idle.get("tag") == tag:
                        idle["tag"] = None
                        server_writer.write(b"DONE\r\n")
                        await server_writer.drain()
                asyncio.ensure_future(end_later())
            elif re.match(rb"^DONE\r?\n$", line, re.I):
                idle["tag"] = None
        if mode == "strip-imap" and re.match(rb"^\S+ STARTTLS\r?\n$", line, re.I):
            tag = line.split(b" ")[0]
            inject(tag + b" BAD STARTTLS not available\r\n")
            continue
        m = re.match(rb"^(\S+) UID (SEARCH|FETCH) ", line, re.I)
        if mode == "chatty" and m:
            idle.setdefault("uidcmds", set()).add(m.group(1))
        m = re.match(rb"^(\S+) UID SEARCH ", line, re.I)
        if mode in ("rev2", "bad-esearch") and m:
            idle["search"] = m.group(1)
        m = re.match(rb"^(\S+) (LOGIN|AUTHENTICATE) ", line, re.I)
        if mode == "session-limit" and m and OPEN[0] > int(os.environ.get("MITM_SESSIONS", "2")):
            inject(m.group(1) + b" NO [LIMIT] Maximum number of connections from user+IP"
                   b" exceeded (mail_max_userip_connections=%d)\r\n"
                   % int(os.environ.get("MITM_SESSIONS", "2")))
            continue
        m = re.match(rb"^(\S+) AUTHENTICATE ", line, re.I)
        if mode == "login-only" and m:
            inject(m.group(1) + b" NO [CANNOT] AUTHENTICATE not offered\r\n")
            continue
        m = re.match(rb'^(\S+) LIST "[^"]*" "?Refused', line, re.I)
        if mode == "refuse-list" and m:
            inject(m.group(1) + b" NO [SERVERBUG] LIST failed: internal error\r\n")
            continue
        m = re.match(rb"^RCPT TO:<(later-[^>]*)>", line, re.I)
        if mode == "defer-rcpt" and m and m.group(1).lower() not in DEFERRED:
            DEFERRED.add(m.group(1).lower())
            inject(b"452 4.2.2 Mailbox full, try again later\r\n")
            continue
        if mode == "stall-smtp":
            if re.match(rb"^MAIL FROM:", line, re.I):
                idle["rcpts"] = []
            m = re.match(rb"^RCPT TO:<([^>]*)>", line, re.I)
            if m:
                addr = m.group(1).lower()
                idle.setdefault("rcpts", []).append(addr)
                if addr.startswith(b"hold-"):
                    STALLS[addr] = STALLS.get(addr, 0) + 1
                    if STALLS[addr] == 1:
                        inject(b"452 4.2.2 Mailbox full, try again later\r\n")
                        continue
                    if STALLS[addr] <= 3:
                        continue    # held back: the client waits for an answer
            if re.match(rb"^DATA\r?\n$", line, re.I):
                held = [a for a in idle.get("rcpts", []) if a.startswith(b"stalldata-")
                        and (b"DATA " + a) not in STALLS]
                if held:
                    STALLS[b"DATA " + held[0]] = 1
                    continue
                body = [a for a in idle.get("rcpts", []) if a.startswith(b"stallbody-")
                        and STALLS.get(b"BODY " + a, 0) < 2]
                if body:
                    STALLS[b"BODY " + body[0]] = STALLS.get(b"BODY " + body[0], 0) + 1
                    idle["sock"].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                    server_writer.write(line)       # the 354 comes back
                    await server_writer.drain()
                    await asyncio.sleep(float(os.environ.get("MITM_BODY_HOLD", "30")))
                    break                           # nothing more read: dropped
        if mode == "strip-smtp" and re.match(rb"^STARTTLS\r?\n$", line, re.I):
            inject(b"454 4.7.0 TLS not available\r\n")
            continue
        server_writer.write(line)
        await server_writer.drain()
    server_writer.close()

async def handle(client_reader, client_writer, args):
    try:
        server_reader, server_writer = await asyncio.open_connection(*args.upstream)
    except OSError:
        client_writer.close()
        return
    def inject(data):
        client_writer.write(data)
    OPEN[0] += 1
    pending = []
    creates = set()        # tags of the client's CREATE commands
    bodies = 0             # BODY[] literals seen on this connection
    state = {"sock": client_writer.get_extra_info("socket")}   # shared with the client side
                                                               # (IDLE, the end of data)
    task = asyncio.ensure_future(pipe_client(client_reader, client_writer, args.log, args.mode,
                                             server_writer, inject, creates, state))
    imap = args.mode in ("preauth", "no-uidnext", "chatty", "rev2", "bad-esearch", "login-only", "huge-uidnext", "bad-size", "changing", "create-race", "refuse-list", "odd-flags", "no-uid", "end-idle", "refuse-fetch-star", "session-limit")
    # (latin1-smtp, slow-dot, defer-rcpt and stall-smtp are SMTP: no literals)
    try:
        while True:
            line = await server_reader.readline()
            if not line:
                break
            change = False     # the literal this line announces is a body to change
            if args.mode == "strip-imap":
                line = strip_imap(line)
            elif args.mode == "preauth" and not state.get("greeted"):
                state["greeted"] = True
                line = re.sub(rb"^\* OK\b", b"* PREAUTH", line, flags=re.I)
            elif args.mode in ("rev2", "bad-esearch"):
                line = re.sub(rb"\bIMAP4rev1\b", b"IMAP4rev2", line)
                if re.match(rb"^\* \d+ RECENT\r?\n$", line, re.I):
                    continue
                m = re.match(rb"^\* SEARCH((?: \d+)*)\r?\n$", line, re.I)
                if m:
                    found = m.group(1).split()
                    uids = uid_set(found)
                    if (found and args.mode == "bad-esearch"
                            and os.path.exists(os.environ.get("MITM_DAMAGE", ""))):
                        nums = [int(u) for u in found]
                        uids = b"%d,%d:*" % (max(nums), min(nums))
                    line = (b'* ESEARCH (TAG "' + state.get("search", b"*") + b'") UID'
                            + (b" ALL " + uids if found else b"") + b"\r\n")
            elif args.mode == "chatty":
                m = re.match(rb"^\* (\d+) EXISTS\r?\n$", line, re.I)
                if m:
                    state["exists"] = m.group(1)
                if re.search(rb"BODY\[\] \{\d+\}\r\n$", line):
                    CHATTY[0] += 1
                    if CHATTY[0] % 2 == 0:
                        line = b"* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n" + line
                tag = line.split(b" ", 1)[0]
                if tag in state.get("uidcmds", ()) and state.get("exists"):
                    line = (b"* 1 FETCH (FLAGS (\\Seen))\r\n* " + state["exists"]
                            + b" EXISTS\r\n" + line)
            elif args.mode == "no-uidnext" and re.match(rb"^\* OK \[UIDNEXT \d+\]", line, re.I):
                continue
            elif args.mode == "login-only":
                line = re.sub(rb" AUTH=[^ \]\r]+", b"", line)
            elif args.mode == "huge-uidnext":
                line = re.sub(rb"\[UIDNEXT \d+\]", b"[UIDNEXT 18446744073709551615]", line)
            elif args.mode in ("bad-size", "changing") and line.startswith(b"* "):
                line = re.sub(rb"RFC822\.SIZE (\d+)",
                              lambda m: b"RFC822.SIZE %d" % (int(m.group(1)) + 7), line)
                if args.mode == "changing" and re.search(rb"BODY\[\] \{\d+\}\r\n$", line):
                    bodies += 1
                    change = bodies % 2 == 0
            elif args.mode == "odd-flags" and line.startswith(b"* ") and b" FETCH " in line:
                line = line.replace(b"FLAGS (", b"FLAGS (NIL $" + b"k" * 300 + b" ", 1)
            elif args.mode == "no-uid" and line.startswith(b"* ") and b"RFC822.SIZE" in line:
                line = re.sub(rb"\bUID \d+ ?", b"", line, count=1)
            elif args.mode == "latin1-smtp":
                line = line.replace(b"250 2.0.0 Ok: queued", b"250 2.0.0 Ok: re\xe7u, queued", 1)
            elif args.mode == "slow-dot" and state.get("dot") and line[:1] in (b"2", b"4", b"5"):
                state["dot"] = False
                await asyncio.sleep(float(os.environ.get("MITM_DOT_DELAY", "130")))
            elif args.mode == "create-race":
                tag = line.split(b" ", 1)[0]
                if tag in creates and line[len(tag):].upper().startswith(b" OK"):
                    creates.discard(tag)
                    line = tag + b" NO [ALREADYEXISTS] Mailbox already exists\r\n"
            elif args.mode == "strip-smtp":
                m = re.match(rb"^250([ -])STARTTLS\r?\n$", line, re.I)
                if m:
                    if m.group(1) == b" " and pending:
                        # STARTTLS was the last line: end the answer on the previous one
                        last = pending.pop()
                        pending.append(b"250 " + last[4:])
                    continue
                if line.startswith(b"250-"):
                    pending.append(line)
                    continue
                if line.startswith(b"250 ") and pending:
                    pending.append(line)
                    line = b"".join(pending)
                    pending = []
            client_writer.write(line)
            # IMAP: a literal's bytes pass as they are (never taken for
            # answers), but for the body 'changing' changes: the case of
            # its first letter, so the length stays
            m = re.search(rb"\{(\d+)\}\r\n$", line) if imap else None
            if m:
                data = await server_reader.readexactly(int(m.group(1)))
                if change:
                    data = re.sub(rb"[A-Za-z]", lambda c: c.group(0).swapcase(), data, count=1)
                client_writer.write(data)
            await client_writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    except asyncio.CancelledError:
        pass                # stopped (SIGTERM) while a stallbody- hold sleeps
    finally:
        OPEN[0] -= 1
        client_writer.close()
        task.cancel()

async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--mode", choices=["strip-imap", "strip-smtp", "plain", "rev2", "bad-esearch", "chatty", "no-uidnext", "login-only", "huge-uidnext", "bad-size", "changing", "create-race", "refuse-list", "odd-flags", "no-uid", "end-idle", "refuse-fetch-star", "latin1-smtp", "slow-dot", "defer-rcpt", "stall-smtp", "preauth", "session-limit"], required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--pid")
    a = p.parse_args()
    lh, lp = a.listen.rsplit(":", 1)
    uh, up = a.upstream.rsplit(":", 1)
    a.upstream = (uh, int(up))
    if a.mode == "plain":
        async def handle_plain(r, w):
            try:
                ur, uw = await asyncio.open_connection(*a.upstream)
            except OSError:
                w.close(); return
            async def copy(src, dst, log):
                try:
                    while True:
                        data = await src.read(65536)
                        if not data:
                            break
                        if log:
                            with open(a.log, "ab") as f:
                                f.write(data)
                        dst.write(data)
                        await dst.drain()
                except ConnectionError:
                    pass
                dst.close()
            await asyncio.gather(copy(r, uw, True), copy(ur, w, False))
        server = await asyncio.start_server(handle_plain, lh, int(lp))
    else:
        server = await asyncio.start_server(lambda r, w: handle(r, w, a), lh, int(lp))
    if a.pid:
        with open(a.pid, "w") as f:
            f.write(str(os.getpid()))
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with server:
        await stop

if __name__ == "__main__":
    asyncio.run(main())
