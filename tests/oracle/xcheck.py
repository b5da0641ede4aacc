#!/usr/bin/env python3
"""Independent-oracle tests for hyrelay's .NET binary XML codec (`hyrelay nbfx decode|encode`).

Oracles (prepared by tools/peers/oracles/setup.sh, which this script runs; it does nothing when
they are up to date):
  Mono   XmlDictionaryReader of Mono's System.Runtime.Serialization (the .NET reference-source
         binary reader), via our tools/peers/oracles/MonoXml.cs, one process for all documents;
  wcf    python-wcfbin (PyPI `wcf` 0.5.5), via tools/peers/oracles/wcf_decode.py, in process.

(a) vectors: every fixtures/nbfx/{nbfx,nbfse,wcf,wcf-relay}/*.bin and fixtures/nbfx/nmf/*-msgN.bin is
    decoded by hyrelay, Mono and wcf. hyrelay and Mono must agree exactly (same infoset: names
    with prefixes, in-scope namespaces, attributes, text including white space, comments);
    hyrelay and wcf must agree after C14N with strip_text, except the documents listed in
    KNOWN_WCF_DIFFS (python-wcfbin bugs). Session messages (NBFSE, NMF encoding 0x08) of one
    direction are decoded in order with the strings of the earlier messages: Mono and wcf carry the
    session along; hyrelay gets one equivalent message (a string table holding the strings of
    msg1..N, then the document of msgN: ids are assigned in order, so every reference means the
    same string). Mono's output is also checked against the fixture's .xml (oracle self-check).
    PINNED holds small hand-made documents found by the generators, checked against Mono too.
(b) generated documents: a seeded random generator writes text XML documents (prefixes, default
    namespaces and their undeclaration, attributes, SOAP/WS-Addressing names and namespaces from
    the static dictionary, text that looks like numbers/booleans/GUIDs/urn:uuid/base64/dates,
    unicode, CR and other white space, CDATA, comments, long strings). Each is encoded with
    `hyrelay nbfx encode` and `hyrelay nbfx encode --session`; Mono must read back the input's
    infoset, and `hyrelay nbfx decode [--session]` must print the same as Mono.
(c) typed documents: Mono's XmlBinaryWriter writes random documents with typed values (numbers,
    decimals, DateTime, TimeSpan, Guid, UniqueId, bytes, lists, arrays, QNames, dictionary and
    session strings; NBFSE sessions of 1-3 messages), see MonoXml.cs gen-typed; hyrelay must
    decode them to what Mono's reader prints.

One tolerance (r_format_choice): .NET's "R" format prints a double as G15 when that parses back to
the same value, else G17; hyrelay parses back exactly, Mono (like .NET Framework) with a parser
that is sometimes one ulp off, so for a few values the two print G15 vs G17 of the same double
(G7/G9 for floats). Those are listed as "R-format choices" and do not fail the run unless --strict.

Usage: python3 tests/oracle/xcheck.py [--seed N] [--count N] [--typed-count N] [--strict] [--show N]
Environment: HYRELAY_BIN (default: the newer of target/release/hyrelay and target/debug/hyrelay).
Exit status 0 when everything agrees, 1 on any mismatch (the first --show of each kind printed).
"""
import argparse
import base64
import concurrent.futures
import glob
import os
import random
import re
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
import xml.parsers.expat
import math
import struct
from decimal import Decimal, InvalidOperation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORACLES = os.path.join(ROOT, "tools", "peers", "oracles")
VENV_PY = os.path.join(ORACLES, ".venv", "bin", "python")
FIX = os.path.join(ROOT, "fixtures", "nbfx")


def bootstrap():
    """Runs setup.sh (idempotent) and re-executes this script with the oracles' venv python."""
    if os.environ.get("HYRELAY_ORACLE_BOOTSTRAPPED") != "1":
        if subprocess.run([os.path.join(ORACLES, "setup.sh")]).returncode != 0:
            sys.exit("xcheck: tools/peers/oracles/setup.sh failed (needs python3-venv, mono-mcs, mono-runtime, "
                     "libmono-system-runtime-serialization4.0-cil)")
        env = dict(os.environ, HYRELAY_ORACLE_BOOTSTRAPPED="1")
        os.execve(VENV_PY, [VENV_PY, os.path.abspath(__file__)] + sys.argv[1:], env)


bootstrap()
sys.path.insert(0, ORACLES)
import wcf_decode  # noqa: E402  (python-wcfbin, from the venv)

# Documents python-wcfbin (wcf 0.5.5) decodes differently from .NET/Mono/hyrelay: name -> (reason,
# evidence). Each was checked by reading both outputs; the evidence string must appear in wcf's
# output (or error), so a diff for another reason is still reported. The bugs are listed in the
# wire research (shared/protocols/wcf-wire/implementations.md section 3, items 18-21).
KNOWN_WCF_DIFFS = {
    "nbfx/nbfs-soap12-fault": (
        "QNameDictionaryText (0xBC/0xBD) read as prefix + 3 fixed big-endian bytes instead of an MB31 key: "
        "KeyError 0x880101 for 's:MustUnderstand'", "KeyError: 8913153"),
    "nbfx/nbfs-text-dictionary-and-qname": (
        "same QNameDictionaryText bug (key 0x88 0x01 read with the following 0x01 as 3 bytes)", "KeyError: 8913153"),
    "nbfx/nbfx-arrays": (
        "array items: bools printed True/False, 1E+300 printed with 301 digits, DateTime without Z, TimeSpan as a "
        "Python timedelta, and prefixed items lose their xmlns and close as </Value> (not well-formed)",
        "<b>True</b>"),
    "nbfx/nbfx-list-and-comment": (
        "list text (0xA4..0xA6) printed as record reprs '<StartListTextRecord(type=0xA4)>' (not well-formed)",
        "StartListTextRecord"),
    "nbfx/nbfx-text-boolrecord-handmade": ("BoolText (0xB4/0xB5) printed as Python True/False", "<b>True</b>"),
    "nbfx/nbfx-text-chars": (
        "non-ASCII characters escaped as HTML entities (&eacute;), undefined in XML", "&eacute;"),
    "nbfx/nbfx-text-datetime": (
        "DateTime truncated to microseconds with a fixed 6-digit fraction and no Z for UTC",
        "2024-02-29T13:45:30.123456<"),
    "nbfx/nbfx-text-decimal": ("decimal 1E-28 (scale 28) printed as '.1'", "<m>.1</m>"),
    "nbfx/nbfx-text-float-double": (
        "doubles printed in full (1E+300 as 301 digits), NaN as NAN, floats widened to double "
        "(0.1f as 0.10000000149011612), 1/3 with Python's 16 digits instead of R's 17", "<d>NAN</d>"),
    "nbfx/nbfx-text-guid-uniqueid-timespan": (
        "TimeSpan printed as a Python timedelta with the ticks scaled wrongly ('1085 days, 11:06:45' for "
        "P1DT2H3M4.005S)", "days, "),
    "nbfx/nbfx-text-int-not-last": (
        "comments printed with added spaces: <!--c--> becomes <!-- c -->", "<!-- c -->"),
}

SHOW = 5
failures = {}  # kind -> list of report strings


def fail(kind, text):
    failures.setdefault(kind, []).append(text)


# ---------------------------------------------------------------- canonical forms

def infoset(xml_text):
    """A strict canonical form: raw qualified names (prefixes kept), each element's in-scope
    namespace bindings (so a lost or added declaration shows even when unused), attributes sorted,
    adjacent text merged with white space kept, comments kept. Returns a list of tokens, or
    'PARSE-ERROR ...'."""
    out, text, scopes = [], [], [{"xml": "http://www.w3.org/XML/1998/namespace"}]

    def flush():
        if text:
            out.append(("text", "".join(text)))
            text.clear()

    def start(name, attrs):
        flush()
        scope = dict(scopes[-1])
        plain = []
        for k, v in attrs.items():
            if k == "xmlns":
                scope[""] = v
            elif k.startswith("xmlns:"):
                scope[k[6:]] = v
            else:
                plain.append((k, v))
        for k in [k for k, v in scope.items() if k == "" and v == ""]:
            del scope[k]  # xmlns="" = no default namespace
        scopes.append(scope)
        out.append(("start", name, tuple(sorted(plain)), tuple(sorted(scope.items()))))

    def end(name):
        flush()
        scopes.pop()
        out.append(("end", name))

    def comment(data):
        flush()
        out.append(("comment", data))

    p = xml.parsers.expat.ParserCreate()
    p.ordered_attributes = False
    p.StartElementHandler = start
    p.EndElementHandler = end
    p.CharacterDataHandler = text.append
    p.CommentHandler = comment
    try:
        p.Parse(xml_text.encode("utf-8") if isinstance(xml_text, str) else xml_text, True)
    except xml.parsers.expat.ExpatError as e:
        return "PARSE-ERROR %s" % e
    flush()
    return out


NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def f32(x):
    """x rounded to single precision (inf when out of range)."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.inf


def r_format_choice(h, m):
    """True when h (hyrelay's text) and m (Mono's) are the two renderings .NET's "R" format chooses
    between for one binary value -- G15 vs G17 for a double, G7 vs G9 for a float -- and hyrelay's
    choice is the one exact arithmetic gives. "R" prints G15 when parsing it back gives the same
    value, else G17; Mono's (and .NET Framework's) parse-back is not correctly rounded (Mono 6.8
    parses "2.4931537E+118" one ulp low), hyrelay's is, so for some values they choose differently."""
    if h == m or not (NUMBER.match(h) and NUMBER.match(m)):
        return False
    try:
        dh, dm = Decimal(h), Decimal(m)
        for short_digits, long_digits, single in ((15, 17, False), (7, 9, True)):
            for g_short, g_long, hyrelay_short in ((dh, dm, True), (dm, dh, False)):
                v = float(g_long)  # the long form always round-trips
                if single:
                    v = f32(v)
                if math.isinf(v) or math.isnan(v):
                    continue
                if g_short != Decimal("%.*g" % (short_digits, v)) or g_long != Decimal("%.*g" % (long_digits, v)):
                    continue
                back = float("%.*g" % (short_digits, v))
                short_round_trips = (f32(back) if single else back) == v
                if short_round_trips == hyrelay_short:
                    return True
        return False
    except (InvalidOperation, OverflowError, ValueError):
        return False


def values_equiv(x, y):
    """x from hyrelay, y from Mono: 'same', 'quirk' (differ only by r_format_choice, also inside
    space-separated lists), or None."""
    if x == y:
        return "same"
    if r_format_choice(x, y):
        return "quirk"
    xs, ys = x.split(" "), y.split(" ")
    if len(xs) == len(ys) > 1 and all(a == b or r_format_choice(a, b) for a, b in zip(xs, ys)):
        return "quirk"
    return None


def compare(a, b, found=None):
    """Compares two infoset() results, a from hyrelay (or hyrelay's input), b from Mono: 'same', 'quirk' (only R-format double/float choices differ),
    or 'diff'. The differing value pairs of a quirk are appended to found."""
    if isinstance(a, str) or isinstance(b, str) or len(a) != len(b):
        return "diff"
    result = "same"
    for x, y in zip(a, b):
        if x == y:
            continue
        if x[0] != y[0] or x[0] in ("end", "comment"):
            return "diff"
        if x[0] == "text":
            pairs = [(x[1], y[1])]
        else:
            if x[1] != y[1] or x[3] != y[3] or [n for n, _ in x[2]] != [n for n, _ in y[2]]:
                return "diff"
            pairs = [(v, w) for (_, v), (_, w) in zip(x[2], y[2])]
        for v, w in pairs:
            e = values_equiv(v, w)
            if e is None:
                return "diff"
            if e == "quirk":
                result = "quirk"
                if found is not None:
                    found.append((v, w))
    return result


quirks = []  # (where, detail)
STRICT = False


def agree(a, b, where, detail):  # a: hyrelay's side, b: Mono's
    """True when the infosets agree; R-format choices count as agreement (recorded as quirks)
    unless --strict."""
    found = []
    c = compare(a, b, found)
    if c == "quirk":
        quirks.append((where, "; ".join("%s vs %s" % p for p in found[:4]), detail))
        return not STRICT
    return c == "same"


def c14n(xml_text):
    try:
        return ET.canonicalize(xml_text.strip(), strip_text=True, with_comments=True)
    except Exception as e:  # noqa: BLE001
        return "PARSE-ERROR %s" % e


def first_difference(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return "%r vs %r" % (a if isinstance(a, str) else "(parsed)", b if isinstance(b, str) else "(parsed)")
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y and compare([x], [y]) == "diff":
            return "token %d: %r vs %r" % (i, x, y)
    return "length %d vs %d" % (len(a), len(b))


def short(s, n=1500):
    s = s.rstrip("\n") if isinstance(s, str) else repr(s)
    return s if len(s) <= n else s[:n] + "... (%d chars)" % len(s)


def hexs(b, n=4096):
    h = b.hex(" ")
    return h if len(b) <= n else b[:n].hex(" ") + " ... (%d bytes)" % len(b)


# ---------------------------------------------------------------- runners

def hyrelay_bin():
    if os.environ.get("HYRELAY_BIN"):
        return os.environ["HYRELAY_BIN"]
    cands = [os.path.join(ROOT, "target", d, "hyrelay") for d in ("release", "debug")]
    cands = [c for c in cands if os.path.exists(c)]
    if not cands:
        sys.exit("xcheck: no hyrelay binary (build it, or set HYRELAY_BIN)")
    return max(cands, key=os.path.getmtime)


HYRELAY = None


def hyrelay(args, data):
    """Runs hyrelay with data on stdin; returns (ok, stdout bytes or error text)."""
    p = subprocess.run([HYRELAY] + args, input=data, capture_output=True, timeout=60)
    if p.returncode != 0:
        return False, "exit %d: %s" % (p.returncode, p.stderr.decode("utf-8", "replace").strip()[-500:])
    return True, p.stdout


def mono_decode_many(jobs):
    """jobs: list of (mode, bytes), mode nbfs|session|session+. Returns [(ok, xml or error)]."""
    exe = os.path.join(ORACLES, "bin", "MonoXml.exe")
    lines = "".join("%s b64:%s\n" % (m, base64.b64encode(b).decode()) for m, b in jobs)
    p = subprocess.run(["mono", exe, "decode-many"], input=lines.encode(), capture_output=True,
                       timeout=600, env=dict(os.environ, TZ="UTC"))
    if p.returncode != 0:
        sys.exit("xcheck: MonoXml decode-many failed: %s" % p.stderr.decode()[-2000:])
    res = []
    for line in p.stdout.decode().splitlines():
        tag, _, rest = line.partition(" ")
        res.append((True, base64.b64decode(rest).decode("utf-8")) if tag == "OK" else (False, rest))
    if len(res) != len(jobs):
        sys.exit("xcheck: MonoXml answered %d of %d jobs; stderr: %s" % (len(res), len(jobs), p.stderr.decode()[-2000:]))
    return res


def mb31(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string_table(strings):
    body = b"".join(mb31(len(s.encode("utf-8"))) + s.encode("utf-8") for s in strings)
    return mb31(len(body)) + body


# ---------------------------------------------------------------- (a) vectors

def session_encoding(path):
    """True when the vector is an [MC-NBFSE] message (NMF encoding 0x08), False for 0x07."""
    name = os.path.basename(path)
    if name.startswith("nbfse-"):
        return True
    m = re.match(r"(nmf-.*)-(c2s|s2c)-msg\d+\.bin$", name)
    if not m:
        return False
    listing = os.path.join(os.path.dirname(path), m.group(1) + ".c2s.txt")
    enc = re.search(r"encoding=0x0([0-9a-fA-F])", open(listing, encoding="utf-8").read())
    if not enc:
        raise SystemExit("xcheck: no KnownEncoding record in %s" % listing)
    return enc.group(1) == "8"


def collect_vectors():
    """Returns a list of groups; a group is a list of (name, path, session) decoded in order."""
    files = []
    for sub in ("nbfx", "nbfse", "wcf", "wcf-relay"):
        files += sorted(glob.glob(os.path.join(FIX, sub, "*.bin")))
    files += sorted(glob.glob(os.path.join(FIX, "nmf", "*-msg[0-9]*.bin")))
    groups = {}
    for f in files:
        session = session_encoding(f)
        m = re.match(r"(.*-msg)(\d+)\.bin$", f)
        key = m.group(1) if (m and session) else f
        groups.setdefault(key, []).append((int(m.group(2)) if m else 0, f, session))
    out = []
    for key in sorted(groups):
        g = sorted(groups[key])
        if g[0][2]:
            nums = [n for n, _, _ in g]
            if nums != list(range(1, len(g) + 1)):
                raise SystemExit("xcheck: session messages %s are not msg1..msg%d" % (key, len(g)))
        out.append([(os.path.relpath(f, FIX)[:-4], f, s) for _, f, s in g])
    return out


# Hand-made documents found by the generators, checked against Mono on every run (no wcf check):
# name -> hex. The R-format ones print differently but are counted as R-format choices.
PINNED = {
    # FloatTextWithEndElement 61.12890625f: G9 is a tie (61.1289062|5); .NET/Mono round it up
    "float-g9-tie": "40 01 76 91 00 84 74 42",
    # FloatTextWithEndElement -1054.765625f: tie, rounded away from zero by .NET/Mono (-1054.76563)
    "float-g9-tie-negative": "40 01 76 91 80 d8 83 c4",
    # DoubleTextWithEndElement 2738837074117.15625: G17 is a tie (2738837074117.1562|5)
    "double-g17-tie": "40 01 76 93 40 29 86 49 7b ed 83 42",
    # DoubleTextWithEndElement 0.776477813720703125: G17 tie (0.77647781372070312|5)
    "double-g17-tie-fraction": "40 01 76 93 00 00 00 00 e8 d8 e8 3f",
    # DoubleTextWithEndElement 0x5883c5fbb74c8ab6 = 2.4931537E+118 (correctly rounded); Mono parses
    # "2.4931537E+118" to ...ab5, so its R picks G17: an R-format choice, not a failure
    "double-r-format-parse-high": "40 01 76 93 b6 8a 4c b7 fb c5 83 58",
    # ... and 0x5883c5fbb74c8ab5: exact arithmetic needs G17, Mono's parse-back accepts G15
    "double-r-format-parse-low": "40 01 76 93 b5 8a 4c b7 fb c5 83 58",
}


def run_vectors(groups):
    items = []  # dicts: name, data, session, hy_input, strings_before
    for name, hx in PINNED.items():
        data = bytes.fromhex(hx)
        items.append({"name": "pinned/" + name, "path": "PINNED[%r] in tests/oracle/xcheck.py" % name, "data": data,
                      "session": False, "first": True, "hy_input": data, "pinned": True})
    for g in groups:
        strings = []
        for name, path, session in g:
            data = open(path, "rb").read()
            it = {"name": name, "path": path, "data": data, "session": session, "first": True}
            if session:
                before = list(strings)
                it["first"] = not before
                body = wcf_decode.read_string_table(data, strings)  # strings += this message's
                it["strings_before"] = before
                it["hy_input"] = string_table(strings) + body if before else data
            else:
                it["hy_input"] = data
            items.append(it)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        hy = list(ex.map(lambda it: hyrelay(["nbfx", "decode"] + (["--session"] if it["session"] else []),
                                            it["hy_input"]), items))
    jobs = [(("session" if it["first"] else "session+") if it["session"] else "nbfs", it["data"]) for it in items]
    return items, hy, jobs


def check_vectors(items, hy, mono):
    same_mono = same_wcf = known = 0
    wcf_sessions = {}
    for it, (hok, hout), (mok, mout) in zip(items, hy, mono):
        name = it["name"]
        hout = hout.decode("utf-8", "replace") if hok else hout
        detail = "input %s (%d bytes)%s:\n    %s" % (
            it["path"], len(it["data"]),
            (", session strings before it: %r" % it["strings_before"]) if it["session"] and not it["first"] else "",
            hexs(it["data"], 600))
        if it["session"] and not it["first"]:
            detail += "\n  hyrelay got the combined message:\n    %s" % hexs(it["hy_input"], 600)
        # hyrelay vs Mono: exact infoset
        if hok and mok and agree(infoset(hout), infoset(mout), name, detail + "\n  hyrelay: %s\n  Mono:    %s" % (
                short(hout), short(mout))):
            same_mono += 1
            it["same"] = True
        elif not hok and not mok:
            same_mono += 1  # both reject (not expected for these vectors)
        else:
            fail("vector: hyrelay vs Mono", "%s\n  %s\n  hyrelay: %s\n  Mono:    %s\n  first difference: %s" % (
                name, detail, short(hout), short(mout),
                first_difference(infoset(hout), infoset(mout)) if hok and mok else "one side failed"))
        if it.get("pinned"):
            continue
        # Mono vs the fixture's .xml (checks our Mono tool)
        xf = it["path"][:-4] + ".xml"
        if os.path.exists(xf):
            fx = open(xf, encoding="utf-8").read()
            if not (mok and c14n(mout) == c14n(fx)):
                fail("oracle self-check: Mono vs fixture .xml", "%s\n  Mono:    %s\n  fixture: %s" % (name, short(mout), short(fx)))
        # hyrelay vs python-wcfbin: C14N, strip_text
        group = re.sub(r"-msg\d+$", "", name)
        if it["session"]:
            if it["first"]:
                wcf_sessions[group] = []
            strings = wcf_sessions.setdefault(group, [])
        else:
            strings = None
        try:
            wout = wcf_decode.decode(it["data"], strings)
            wok = True
        except Exception as e:  # noqa: BLE001
            wok, wout = False, "%s: %s" % (type(e).__name__, e)
        equal = hok and wok and c14n(hout) == c14n(wout)
        if name in KNOWN_WCF_DIFFS:
            reason, evidence = KNOWN_WCF_DIFFS[name]
            if equal:
                print("note: %s is in KNOWN_WCF_DIFFS but python-wcfbin now agrees; remove the entry" % name)
                same_wcf += 1
            elif evidence in wout:
                known += 1
            else:
                fail("vector: hyrelay vs python-wcfbin", "%s (known diff, but %r not in wcf's output: another "
                     "difference?)\n  %s\n  hyrelay: %s\n  wcf:     %s" % (
                         name, evidence, detail, short(c14n(hout) if hok else hout), short(wout)))
        elif equal:
            same_wcf += 1
        else:
            fail("vector: hyrelay vs python-wcfbin", "%s\n  %s\n  hyrelay: %s\n  wcf:     %s" % (
                name, detail, short(c14n(hout) if hok else hout), short(c14n(wout) if wok else wout)))
    return same_mono, same_wcf, known


# ---------------------------------------------------------------- (b) generated documents

def load_static_dictionary():
    out = []
    for line in open(os.path.join(ORACLES, "nbfs-dictionary.txt"), encoding="utf-8"):
        line = line.rstrip("\n")
        if line:
            out.append(line.split("\t", 1)[1])
    return out


NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class Gen:
    """Random text XML documents with a known infoset."""

    def __init__(self, rng, static):
        self.r = rng
        self.dict_names = [s for s in static if NCNAME.match(s) and not s.lower().startswith("xml")]
        self.dict_ns = [s for s in static if re.match(r"^(https?|urn):", s) and " " not in s]
        self.soap = ["Envelope", "Header", "Body", "Fault", "Code", "Value", "Reason", "Text", "Action", "To",
                     "MessageID", "RelatesTo", "ReplyTo", "Address", "mustUnderstand", "Detail", "Subcode"]
        self.other_ns = ["urn:x", "urn:example:creditcheck", "http://example.org/ns/ü", "http://schemas.example.org/a b",
                         "urn:uuid:" + str(uuid.UUID(int=rng.getrandbits(128))), "tag:x,2024:&<>\"'", "x"]
        self.plain_names = ["customerId", "amount", "x", "a-b.c_d", "Ünïcödé", "名前", "late2", "item",
                            "n" + "x" * 70, "_", "a.b", "Int32", "string"]
        self.prefixes = list("abcdefghijklmnopqrstuvwxyz") + ["ns0", "soap", "wsa", "xs", "i", "Ω", "p-q", "s12"]

    # values -----------------------------------------------------------
    def guid(self):
        g = str(uuid.UUID(int=self.r.getrandbits(128)))
        return g.upper() if self.r.random() < 0.2 else g

    def value(self):
        r = self.r
        c = r.randrange(14)
        if c == 0:
            return r.choice(["0", "1", "-1", "127", "128", "-128", "-129", "255", "256", "32767", "32768", "-32769",
                             "2147483647", "2147483648", "-2147483648", "-2147483649", "9223372036854775807",
                             "-9223372036854775808", "9223372036854775808", "18446744073709551615", "007", "+5",
                             "-0", "00", "1 ", " 1", "0x10", "1_000"])
        if c == 1:
            return str(r.randint(-2 ** r.randrange(1, 64), 2 ** r.randrange(1, 64)))
        if c == 2:
            return r.choice(["1.5", "-1.5", "0.0", "1.0", "-0.0", "0.1", "1E+38", "3.4028235E+38", "1.7976931348623157E+308",
                             "1e300", "1E-45", "4.94065645841247E-324", "NaN", "INF", "-INF", "Infinity", "nan", "1.",
                             ".5", "1e5", "1E5", "100000", "1.25E-05", "12345678.9", "0.30000000000000004", "2E+15",
                             "1234567.0", "-3.4028235E+38", "5E-324"])
        if c == 3:
            x = r.choice([r.random() * 10 ** r.randint(-30, 30), float(r.randint(-10 ** 6, 10 ** 6)) / 8,
                          r.uniform(-1, 1), float(r.getrandbits(53)) * 2 ** r.randint(-1070, 970)])
            return r.choice([repr(x), "%.17g" % x, "%.9g" % x, ("%.7E" % x).replace("E+0", "E+").replace("E-0", "E-")])
        if c == 4:
            return r.choice(["true", "false", "True", "FALSE", " true", "1", "0"])
        if c == 5:
            return self.guid()
        if c == 6:
            return r.choice(["urn:uuid:", "urn:uuid:", "URN:UUID:", "uuid:"]) + self.guid()
        if c == 7:
            raw = bytes(r.getrandbits(8) for _ in range(r.randrange(0, 40)))
            b = base64.b64encode(raw).decode()
            return r.choice([b, b.rstrip("="), "Test", "AAAA", "SGVsbG8=", b + "\n", b.lower()])
        if c == 8:
            return r.choice(["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.1234567Z", "2024-01-02T03:04:05",
                             "2024-01-02T03:04:05.5+02:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59.9999999Z",
                             "2024-01-02", "P1DT2H3M4.005S", "PT0S", "-P1D", "PT1H", "P10675199DT2H48M5.4775807S"])
        if c == 9:
            return r.choice(["1.50", "0.0000001", "79228162514264337593543950335", "1E-28", "-0.00", "1002.00",
                             "CUST-0001", "net.tcp://127.0.0.1:808/x", "s:MustUnderstand", "a:b", "xmlns"])
        if c == 10:
            return r.choice(["", " ", "  ", "\t", "\n", "\r", "\r\n", " a ", "a  b", "\ta\n"])
        if c == 11:
            return "".join(r.choice("abcXYZ019 .-_:/<>&\"'éü€日本語😀\u0301\u00a0\t\n\r\u2028") for _ in range(r.randrange(1, 30)))
        if c == 12:
            n = r.choice([255, 256, 257, 300, 1000, 65535, 65536, 70000]) if r.random() < 0.3 else r.randrange(100, 400)
            unit = r.choice(["a", "é", "語", "😀", "ab c"])
            return (unit * n)[:n] if len(unit) == 1 else (unit * n)[:n]
        return r.choice(["hello", "Hello, World!", "héllo wörld", "日本語", "😀", "x" * 3, "1 2 3", "true false",
                         "http://www.w3.org/2005/08/addressing/anonymous", "Envelope",
                         "http://www.w3.org/2003/05/soap-envelope"])

    # escaping -----------------------------------------------------------
    def esc_text(self, s):
        r = self.r
        out = []
        for ch in s:
            if ch == "&":
                out.append("&amp;")
            elif ch == "<":
                out.append("&lt;")
            elif ch == ">":
                out.append(r.choice([">", "&gt;"]))
            elif ch == "\r":
                out.append(r.choice(["&#xD;", "&#13;"]))
            elif ord(ch) > 127 and r.random() < 0.1:
                out.append(r.choice(["&#%d;" % ord(ch), "&#x%X;" % ord(ch)]))
            else:
                out.append(ch)
        return "".join(out)

    def esc_attr(self, s, q):
        out = []
        for ch in s:
            if ch == "&":
                out.append("&amp;")
            elif ch == "<":
                out.append("&lt;")
            elif ch == q:
                out.append("&quot;" if q == '"' else "&apos;")
            elif ch in "\t\n\r":
                out.append("&#%d;" % ord(ch))  # literal ones would be normalised to spaces
            else:
                out.append(ch)
        return "".join(out)

    def attr(self, name, value):
        q = self.r.choice(['"', '"', "'"])
        sp = self.r.choice(["", "", " "])
        return " %s%s=%s%s%s%s" % (name, sp, sp, q, self.esc_attr(value, q), q)

    # structure -----------------------------------------------------------
    def name(self):
        r = self.r.random()
        if r < 0.35:
            return self.r.choice(self.soap)
        if r < 0.65:
            return self.r.choice(self.dict_names)
        return self.r.choice(self.plain_names)

    def ns(self):
        return self.r.choice(self.dict_ns) if self.r.random() < 0.6 else self.r.choice(self.other_ns)

    def element(self, scope, depth, out):
        r = self.r
        decls = {}
        if r.random() < 0.3 or depth == 0:
            for _ in range(r.choice([0, 1, 1, 2, 3])):
                decls[r.choice(self.prefixes)] = self.ns()
        if r.random() < 0.25:
            decls[""] = self.ns() if (r.random() < 0.8 or not scope.get("")) else ""
        inner = dict(scope)
        inner.update(decls)
        prefixed = [p for p, u in inner.items() if p and u]
        prefix = r.choice(prefixed) if prefixed and r.random() < 0.5 else ""
        qname = (prefix + ":" if prefix else "") + self.name()
        tag = ["<" + qname]
        items = list(decls.items())
        attrs, seen = [], set()
        for _ in range(r.choice([0, 0, 1, 1, 2, 3, 5])):
            k = r.random()
            if k < 0.1:
                an = r.choice(["xml:lang", "xml:space"])
                av = r.choice(["en-US", "de", ""]) if an == "xml:lang" else r.choice(["preserve", "default"])
            else:
                p = r.choice(prefixed) if prefixed and k < 0.45 else ""
                an = (p + ":" if p else "") + self.name()
                av = self.value()
            key = (inner.get(an.split(":")[0], "?") if ":" in an else "", an.split(":")[-1])
            if an in seen or key in seen:
                continue
            seen.update([an, key])
            attrs.append((an, av))
        # xmlns declarations and attributes in random order
        parts = [("xmlns" + (":" + p if p else ""), u) for p, u in items] + attrs
        r.shuffle(parts)
        for n, v in parts:
            tag.append(self.attr(n, v))
        tag.append(r.choice(["", "", " ", "\n "]))
        nchildren = 0 if depth > 6 else r.choice([0, 0, 1, 1, 1, 2, 3, 4])
        if nchildren == 0 and r.random() < 0.5:
            out.append("".join(tag) + "/>")
            return
        out.append("".join(tag) + ">")
        for _ in range(nchildren):
            k = r.random()
            if k < 0.45:
                self.element(inner, depth + 1, out)
            elif k < 0.8:
                out.append(self.esc_text(self.value()))
            elif k < 0.88:
                out.append(self.comment())
            elif k < 0.94:
                out.append("<![CDATA[%s]]>" % self.value().replace("]]>", "]]").replace("\r", ""))
            else:
                out.append(r.choice(["\n  ", " ", "\t"]))
        out.append("</%s%s>" % (qname, r.choice(["", "", " "])))

    def comment(self):
        s = self.r.choice(["", " c ", "comment", " <x> & ü ", "a-b", "日本語", " x\ny "])
        return "<!--%s-->" % s

    def document(self):
        r = self.r
        out = []
        if r.random() < 0.2:
            out.append(r.choice(['<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>\n']))
        if r.random() < 0.15:
            out.append(self.comment())
        if r.random() < 0.3:
            self.envelope(out)
        else:
            self.element({}, 0, out)
        if r.random() < 0.1:
            out.append(self.comment())
        return "".join(out)

    def envelope(self, out):
        """A SOAP envelope shaped like WCF's, with generated content in the header and body."""
        r = self.r
        s = r.choice(["http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/soap/envelope/"])
        scope = {"s": s, "a": "http://www.w3.org/2005/08/addressing"}
        out.append('<s:Envelope xmlns:s="%s" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header>' % s)
        out.append('<a:Action s:mustUnderstand="1">%s</a:Action>' % r.choice(
            ["http://tempuri.org/IService/Op", "urn:CheckCredit", "http://www.w3.org/2005/08/addressing/fault"]))
        if r.random() < 0.7:
            out.append("<a:MessageID>urn:uuid:%s</a:MessageID>" % self.guid().lower())
        if r.random() < 0.5:
            out.append("<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>")
        if r.random() < 0.5:
            self.element(scope, 3, out)
        out.append("<s:Body>" if r.random() < 0.5 else "</s:Header><s:Body>")
        if out[-1] == "<s:Body>":
            out[-1] = "</s:Header><s:Body>"
        self.element(scope, 2, out)
        out.append("</s:Body></s:Envelope>")


def run_generated(seed, count):
    rng = random.Random(seed)
    gen = Gen(rng, load_static_dictionary())
    docs = []
    for i in range(count):
        d = gen.document()
        inf = infoset(d)
        if isinstance(inf, str):
            raise SystemExit("xcheck: generator bug, doc %d is not well-formed: %s\n%s" % (i, inf, d))
        docs.append((d, inf))
    tasks = [(i, sess) for i in range(count) for sess in (False, True)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        enc = list(ex.map(lambda t: hyrelay(["nbfx", "encode"] + (["--session"] if t[1] else []),
                                            docs[t[0]][0].encode("utf-8")), tasks))
        dec = list(ex.map(lambda te: hyrelay(["nbfx", "decode"] + (["--session"] if te[0][1] else []), te[1][1])
                          if te[1][0] else (False, "not encoded"), zip(tasks, enc)))
    jobs = [("session" if sess else "nbfs", e[1] if e[0] else b"") for (i, sess), e in zip(tasks, enc)]
    return docs, tasks, enc, dec, jobs


def check_generated(docs, tasks, enc, dec, mono, seed):
    ok_docs = set(range(len(docs)))
    for (i, sess), (eok, ebin), (dok, dout), (mok, mout) in zip(tasks, enc, dec, mono):
        src, want = docs[i]
        mode = "encode --session" if sess else "encode"
        head = "seed %d doc %d (hyrelay nbfx %s)\n  input XML: %s" % (seed, i, mode, short(src, 3000))
        if not eok:
            fail("generated: hyrelay encode failed", "%s\n  hyrelay: %s" % (head, ebin))
            ok_docs.discard(i)
            continue
        dout = dout.decode("utf-8", "replace") if dok else dout
        bytes_line = "\n  bytes (%d): %s" % (len(ebin), hexs(ebin, 1500))
        if not (mok and agree(want, infoset(mout), "seed %d doc %d %s: input vs Mono" % (seed, i, mode),
                                head + bytes_line + "\n  Mono: " + short(mout, 3000))):
            fail("generated: Mono reads another infoset than the input", "%s%s\n  Mono: %s\n  first difference (input vs Mono): %s" % (
                head, bytes_line, short(mout, 3000), first_difference(want, infoset(mout)) if mok else "Mono failed"))
            ok_docs.discard(i)
        if not (dok and mok and agree(infoset(dout), infoset(mout), "seed %d doc %d %s: hyrelay decode vs Mono" % (
                seed, i, mode), head + bytes_line + "\n  hyrelay decode: " + short(dout, 3000) + "\n  Mono: " + short(mout, 3000))):
            fail("generated: hyrelay decode vs Mono", "%s%s\n  hyrelay decode: %s\n  Mono:           %s\n  first difference: %s" % (
                head, bytes_line, short(dout, 3000), short(mout, 3000),
                first_difference(infoset(dout), infoset(mout)) if dok and mok else "one side failed"))
            ok_docs.discard(i)
    return len(ok_docs)


# ---------------------------------------------------------------- (c) typed documents written by Mono

def run_typed(seed, count):
    """Mono's XmlBinaryWriter writes `count` random documents with typed values (see MonoXml.cs
    gen-typed) and its reader prints them; hyrelay decodes the same bytes."""
    exe = os.path.join(ORACLES, "bin", "MonoXml.exe")
    p = subprocess.run(["mono", exe, "gen-typed", str(seed % 2 ** 31), str(count)], capture_output=True, timeout=600,
                       env=dict(os.environ, TZ="UTC"))
    if p.returncode != 0:
        sys.exit("xcheck: MonoXml gen-typed failed: %s" % p.stderr.decode()[-2000:])
    msgs, strings = [], []
    for k, line in enumerate(p.stdout.decode().splitlines()):
        mode, b64, tag, rest = line.split(" ", 3)
        data = base64.b64decode(b64)
        m = {"k": k, "mode": mode, "data": data, "hy_input": data,
             "mono": (True, base64.b64decode(rest).decode("utf-8")) if tag == "OK" else (False, rest)}
        if mode == "session":
            strings = []
        if mode != "nbfs":
            before = len(strings)
            body = wcf_decode.read_string_table(data, strings)
            if before:
                m["hy_input"] = string_table(strings) + body
        msgs.append(m)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        hy = list(ex.map(lambda m: hyrelay(["nbfx", "decode"] + (["--session"] if m["mode"] != "nbfs" else []),
                                           m["hy_input"]), msgs))
    return msgs, hy


def check_typed(msgs, hy, seed):
    same = 0
    for m, (hok, hout) in zip(msgs, hy):
        mok, mout = m["mono"]
        hout = hout.decode("utf-8", "replace") if hok else hout
        head = "typed seed %d message %d (%s, %d bytes)" % (seed, m["k"], m["mode"], len(m["data"]))
        detail = "%s\n  bytes: %s%s\n  hyrelay: %s\n  Mono:    %s" % (
            head, hexs(m["data"], 1500),
            "\n  hyrelay got the combined message: %s" % hexs(m["hy_input"], 600) if m["hy_input"] is not m["data"] else "",
            short(hout, 3000), short(mout, 3000))
        if not mok:
            fail("typed: Mono cannot read what Mono wrote", detail)
        elif hok and agree(infoset(hout), infoset(mout), head, detail):
            same += 1
        else:
            fail("typed: hyrelay decode vs Mono", detail + "\n  first difference: %s" % (
                first_difference(infoset(hout), infoset(mout)) if hok else "hyrelay failed"))
    return same


# ---------------------------------------------------------------- main

def main():
    global HYRELAY, SHOW, STRICT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="generator seed (default: random, printed)")
    ap.add_argument("--count", type=int, default=250, help="generated documents (default 250)")
    ap.add_argument("--typed-count", type=int, default=300,
                    help="documents written by Mono's binary writer with typed values (default 300)")
    ap.add_argument("--strict", action="store_true",
                    help="count R-format double/float rendering choices (see r_format_choice) as mismatches")
    ap.add_argument("--show", type=int, default=SHOW, help="mismatches printed per kind (default %d)" % SHOW)
    args = ap.parse_args()
    SHOW = args.show
    STRICT = args.strict
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 31)
    HYRELAY = hyrelay_bin()
    t0 = time.time()
    print("oracle: hyrelay = %s, seed = %d (rerun: python3 tests/oracle/xcheck.py --seed %d)" % (
        os.path.relpath(HYRELAY, ROOT), seed, seed))

    items, hy, vjobs = run_vectors(collect_vectors())
    docs, tasks, enc, dec, gjobs = run_generated(seed, args.count)
    mono = mono_decode_many(vjobs + gjobs)
    same_mono, same_wcf, known = check_vectors(items, hy, mono[:len(vjobs)])
    gen_ok = check_generated(docs, tasks, enc, dec, mono[len(vjobs):], seed)
    combined = [it["name"] for it in items if it["hy_input"] is not it["data"]]
    print("oracle: session messages after the first, given to hyrelay as one message with the strings of all "
          "earlier ones: %s" % ", ".join(combined))
    tmsgs, thy = run_typed(seed, args.typed_count)
    typed_ok = check_typed(tmsgs, thy, seed)

    for kind, lst in failures.items():
        print("\n--- %s: %d mismatch(es)%s" % (kind, len(lst), ", first %d:" % SHOW if len(lst) > SHOW else ":"))
        for t in lst[:SHOW]:
            print("* " + t)
    if quirks:
        print("\n--- R-format choices: %d place(s) where hyrelay and Mono print the same double/float with "
              "G15 vs G17 (G7 vs G9) digits (%s), first %d:" % (
                  len(quirks), "counted as mismatches: --strict" if STRICT else "not failures; --strict fails on them",
                  min(SHOW, len(quirks))))
        for where, values, detail in quirks[:SHOW]:
            print("* %s: %s\n  %s" % (where, values, detail.replace("\n", "\n  ")))
    print("\noracle: %d vectors (%d pinned) same as Mono, %d same as wcf (%d known wcf diffs), %d generated docs round-trip "
          "through Mono, %d Mono-written typed messages decode the same%s  [%d vectors, %d generated docs x2 "
          "encodings, %d typed messages, seed %d, %.1f s]" % (
              same_mono, sum(1 for it in items if it.get("pinned") and it.get("same")), same_wcf, known, gen_ok, typed_ok,
              ", %d R-format choices" % len(quirks) if quirks else "",
              len(items), len(docs), len(tmsgs), seed, time.time() - t0))
    if failures:
        print("oracle: FAILED (%s)" % ", ".join("%s: %d" % (k, len(v)) for k, v in failures.items()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
