"""Decode .NET binary XML with python-wcfbin (PyPI `wcf`, an independent implementation) and print XML.

python-wcfbin has no [MC-NBFSE] support: we read the string table ourselves and put session string
k into its dictionary as the odd wire key 2k+1, which is what a session reference means.

  .venv/bin/python wcf_decode.py FILE                      plain [MC-NBFS] document
  .venv/bin/python wcf_decode.py --session FILE [PREV...]  [MC-NBFSE] message; PREV = earlier
                                                           messages of the same direction, in order
As a module: decode(data, session=None) -> str; session is a list that collects the strings of
successive messages of one direction (pass the same list for msg1, msg2, ...).
"""
import io
import logging
import sys

logging.getLogger("wcf").setLevel(logging.ERROR)
from wcf.dictionary import dictionary  # noqa: E402
from wcf.records import print_records  # noqa: E402
from wcf.records.base import Record  # noqa: E402
import wcf.records.attributes  # noqa: E402,F401  (registers the record classes)
import wcf.records.elements  # noqa: E402,F401
import wcf.records.text  # noqa: E402,F401


def mb31(b, i):
    v = shift = 0
    for _ in range(5):
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i
    raise ValueError("mb31 longer than 5 bytes")


def read_string_table(data, session):
    """Appends the message's [MC-NBFSE] strings to session, returns the document bytes."""
    size, i = mb31(data, 0)
    end = i + size
    while i < end:
        n, i = mb31(data, i)
        session.append(data[i:i + n].decode("utf-8"))
        i += n
    return data[end:]


def decode(data, session=None):
    for key in [k for k in dictionary if k % 2 == 1]:  # forget the previous call's session strings
        del dictionary[key]
    if session is not None:
        data = read_string_table(data, session)
        for k, s in enumerate(session):
            dictionary[2 * k + 1] = s
    out = io.StringIO()
    print_records(Record.parse(io.BytesIO(data)), fp=out)
    return out.getvalue()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--session":
        files = args[2:] + [args[1]]
        strings = []
        for f in files[:-1]:
            read_string_table(open(f, "rb").read(), strings)
        print(decode(open(files[-1], "rb").read(), strings))
    elif len(args) == 1:
        print(decode(open(args[0], "rb").read()))
    else:
        sys.exit("usage: wcf_decode.py [--session] FILE [EARLIER-MESSAGES...]")
