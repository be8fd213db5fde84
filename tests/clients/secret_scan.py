"""The scan at the end of a test session for secrets in what Keyless wrote: every log line of
every `keyless` process the suite started and every audit record it wrote must be free of
secret access keys, session tokens, web identity (JWT) tokens and request signatures.

How the logs are collected: the `keyless_bin` fixture (conftest.py) hands the tests a wrapper
script (`wrapper_script`) instead of the binary. The wrapper notes the command line, keeps a
copy of the process's standard output and error in the session's log folder, and then execs
the binary, so that the process the tests signal and wait for is Keyless itself, with its own
exit status. A stream the test sends to a regular file is not copied through a pipe: the file
is hard-linked into the log folder (or, on another file system, its path is noted), so that it
is written exactly as before and is scanned as it is at the end. Other streams (pipes, sockets,
/dev/null) go through `tee`, which passes every byte on at once, so lines arrive as they did,
and the reader sees the end of the stream when the process exits. Containers started by
kubelet.py (the chart's pods) log to files of their own, which it links into the folder too.

What is looked for (`find_secrets`):
- the secrets the suite's servers hold, verbatim: every root secret access key (the data
  folders' `root-credentials`), their session-token keys, encryption master keys and OIDC
  signing keys, and the secret keys of the suite's credentials and configuration files;
- SigV4 signatures (64 hex digits after `Signature=`, `X-Amz-Signature=`, `chunk-signature=`,
  `x-amz-signature:` ...) and SigV2 signatures (`Signature=` and base64 of an HMAC-SHA1 or
  -SHA256, and `Authorization: AWS KEYID:SIGNATURE`);
- JWTs (`eyJ...` `.` `eyJ...` `.` ...): service-account and other web identity tokens;
- Keyless's session tokens: standard base64 of a version byte 1, a 12-byte nonce, the sealed
  claims and a 16-byte tag (crates/keyless-sts/src/seal.rs), so `AQ`..`Af` and at least 146
  more base64 characters; and any value given as a security token (`X-Amz-Security-Token=`);
- secret access keys in general: Keyless makes every secret key 40 characters of base64's
  alphabet, random (crates/keyless-iam/src/ids.rs `secret_access_key`) or the first 40 of an
  HMAC-SHA256 in base64 (crates/keyless-sts/src/seal.rs `derive_secret`). A run of exactly 40
  such characters, not inside a longer base64 or base64url run, counts unless it cannot be
  one (`looks_random`): all hex (a SHA-1), no upper or no lower case letter, fewer than 16
  distinct characters, or letters alone with few capitals (words written together); a random
  key is refused with a probability of about 2e-6 (test_secret_scan.py).

Each line is scanned as written and, when it holds `%`, URL-decoded, so that a signature or key
in a logged URL is found. A hit is reported with its file, line number and an excerpt in which
the secret is cut to its first four characters.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import urllib.parse
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The wrapper

WRAPPER = r"""#!{bash}
# Made by tests/clients/conftest.py for this test session (see secret_scan.py): runs Keyless
# with copies of its standard output and error in {log_dir}, for the secret scan at the end.
log_dir={log_dir_q}
id="$log_dir/keyless-$$-${{EPOCHREALTIME//[.,]/}}"
{{ printf '%s\0' "$@" > "$id.cmd"; }} 2>/dev/null
# A stream going to a file that has a name is linked, not piped: it is written as before, and
# scanned as it is at the end. (pytest's capture files have none: they are piped like the rest.)
keep() {{
  local target
  target=$({readlink} /proc/$$/fd/$1 2>/dev/null)
  [[ -f /proc/$$/fd/$1 && $target == /* && $target != *" (deleted)" ]] || return 1
  {ln} -L /proc/$$/fd/$1 "$id.$2" 2>/dev/null || printf '%s\n' "$target" > "$id.$2.path"
}}
keep 1 out || exec 1> >(exec {tee} -a "$id.out")
keep 2 err || exec 2> >(exec {tee} -a "$id.err" >&2)
exec {real_q} "$@"
"""


def wrapper_script(real: str, log_dir: Path, bash: str, tee: str, ln: str, readlink: str) -> str:
    """The text of the wrapper that runs `real` with its output copied into `log_dir`."""
    return WRAPPER.format(bash=bash, log_dir=log_dir, log_dir_q=shlex.quote(str(log_dir)),
                          real_q=shlex.quote(real), tee=shlex.quote(tee), ln=shlex.quote(ln),
                          readlink=shlex.quote(readlink))


# ---------------------------------------------------------------------------------------------
# The patterns

B64 = "A-Za-z0-9+/"
SIGV4 = re.compile(r"(?i)signature[\"']?\s*[=:]\s*[\"']?([0-9a-f]{64})(?![0-9a-f])")
SIGV2 = re.compile(r"(?i)(?<![a-z0-9-])signature=([%s]{27}=|[%s]{43}=)(?![%s=])" % (B64, B64, B64))
SIGV2_HEADER = re.compile(r"\bAWS [A-Z0-9]{16,128}:([%s]{27}=)" % B64)
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
SESSION_TOKEN = re.compile(r"(?<![%s])A[Q-Za-f][%s]{146,}={0,2}" % (B64, B64))
SECURITY_TOKEN = re.compile(r"(?i)security[-_]?token[\"']?\s*[=:]\s*[\"']?([%s]{20,}={0,2})" % B64)
# Not part of a longer run of base64 or base64url (a JWT's, a JWK's), nor followed by padding.
SECRET_KEY = re.compile(r"(?<![%s_-])[%s]{40}(?![%s=_-])" % (B64, B64, B64))
HEX = re.compile(r"[0-9a-fA-F]+")


def looks_random(text: str) -> bool:
    """Whether 40 base64 characters can be one of Keyless's secret keys (see the module's
    docstring): not hex, both cases, at least 16 distinct characters, and either a digit, `+`
    or `/`, or upper case for more than 3 letters in 10 (words written together, as in
    `ListObjectVersionsWithPrefixAndDelimiter`, have one capital a word)."""
    if HEX.fullmatch(text) or len(set(text)) < 16:
        return False
    upper, lower = sum(c.isupper() for c in text), sum(c.islower() for c in text)
    if not upper or not lower:
        return False
    return any(c.isdigit() or c in "+/" for c in text) or upper > 0.3 * (upper + lower)


@dataclasses.dataclass(frozen=True)
class Hit:
    kind: str
    start: int
    end: int


def secrets_in(text: str, literals=(), allow=()) -> list[Hit]:
    """The secrets in `text`: the kind and span of each, but for the kinds in `allow`."""
    found: list[Hit] = []
    for secret in literals:
        start = text.find(secret)
        while start >= 0:
            found.append(Hit("known secret", start, start + len(secret)))
            start = text.find(secret, start + 1)
    for kind, pattern, group in (("SigV4 signature", SIGV4, 1), ("SigV2 signature", SIGV2, 1),
                                 ("SigV2 signature", SIGV2_HEADER, 1), ("JWT", JWT, 0),
                                 ("session token", SESSION_TOKEN, 0), ("session token", SECURITY_TOKEN, 1)):
        found += [Hit(kind, m.start(group), m.end(group)) for m in pattern.finditer(text)]
    # Forty characters inside a token found above are part of it, not a key of their own.
    found += [Hit("secret access key", m.start(), m.end()) for m in SECRET_KEY.finditer(text)
              if looks_random(m.group()) and not any(h.start < m.end() and m.start() < h.end for h in found)]
    return [h for h in found if h.kind not in allow]


def find_secrets(line: str, literals=(), allow=()) -> tuple[str, list[Hit]]:
    """The secrets in one line: (the text the spans are of, the hits). A line holding `%` is
    scanned URL-decoded too, and the decoded text is the one reported when it reveals a kind
    of secret the line as written does not show."""
    hits = secrets_in(line, literals, allow)
    if "%" in line:
        decoded = urllib.parse.unquote(line)
        more = secrets_in(decoded, literals, allow) if decoded != line else []
        if {h.kind for h in more} - {h.kind for h in hits}:
            return decoded, more
    return line, hits


def redact(text: str, hits: list[Hit], width: int = 60) -> str:
    """An excerpt of `text` from a little before its first hit, every secret in it cut to its
    first 4 characters and named."""
    out, last = [], 0
    for h in sorted(hits, key=lambda h: (h.start, -h.end)):
        if h.start < last:
            continue
        out.append(text[last:h.start])
        out.append(f"{text[h.start:h.start + 4]}…[{h.kind}, {h.end - h.start} chars]")
        last = h.end
    out.append(text[last:])
    joined = "".join(out)
    begin = max(0, min(h.start for h in hits) - width)
    excerpt = joined[begin:begin + 5 * width].rstrip("\n")
    return ("…" if begin else "") + excerpt + ("…" if begin + 5 * width < len(joined.rstrip("\n")) else "")


def keep_log(path: str, name: str) -> None:
    """Puts a log file the suite writes itself (a container's, in kubelet.py) in the session's
    log folder, `KEYLESS_TEST_LOG_DIR`, for the scan: hard-linked, or its path noted."""
    log_dir = os.environ.get("KEYLESS_TEST_LOG_DIR")
    if not log_dir:
        return
    target = os.path.join(log_dir, name)
    try:
        os.link(path, target)
    except OSError:
        with open(target + ".path", "w") as f:
            f.write(os.path.abspath(path))


# ---------------------------------------------------------------------------------------------
# The session's scan


def known_secrets(basetemp: Path, skip: set[Path]) -> set[str]:
    """The secrets the session's files hold, by value: of each Keyless data folder (one with a
    `root-credentials`) the root secret key, the session-token key, the encryption master keys
    and the OIDC signing keys; and the secret keys in the credentials and configuration files
    the tests wrote (an agent's credentials, s3cmd's and rclone's configurations, Keyless
    configurations with users)."""
    found: set[str] = set()
    key_line = re.compile(r"(?i)secret(?:_access)?_key\s*[=:]\s*[\"']?([^\"'\s]{16,})")
    for root, dirs, files in os.walk(basetemp):
        here = Path(root)
        if here in skip:
            dirs[:] = []
            continue
        for name in files:
            path = here / name
            if not (name.endswith(("credentials", ".toml", ".cfg", ".conf", ".ini", ".s3cfg")) or name in
                    ("session-key", "encryption-keys.json", "oidc-keys.json")):
                continue
            try:
                if path.stat().st_size > 1 << 20:
                    continue
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if name == "session-key":
                found.add(text.strip())
            elif name == "encryption-keys.json":
                found.update(json.loads(text).get("keys", {}).values())
            elif name == "oidc-keys.json":
                found.update(k["pkcs8"] for k in json.loads(text).get("keys", []) if "pkcs8" in k)
            else:
                found.update(m.group(1) for m in key_line.finditer(text))
    return {s for s in found if len(s) >= 16}


def is_audit_trail(path: Path) -> bool:
    """An audit trail file: `--audit-log FILE` and its rotations (`FILE.1`, ...)."""
    name = path.name
    return "audit" in name or name.endswith(".jsonl") or bool(re.search(r"\.jsonl\.[0-9]+$", name))


def subcommand(argv: list[str]) -> str:
    """`serve`, `token`, `iam create-service-account`, ...: what a `keyless` command line runs."""
    words, i = [], 0
    while i < len(argv):
        if argv[i] == "--log-format":
            i += 2
            continue
        if argv[i].startswith("-"):
            break
        words.append(argv[i])
        i += 1
    return " ".join(words[:2])


# What a command prints on its standard output as its answer, not as a log: `keyless token`
# prints the token it was asked to mint.
ANSWERS = {"token": {"JWT"}}


@dataclasses.dataclass
class Scanned:
    files: int = 0
    logs: int = 0
    trails: int = 0
    lines: int = 0
    records: int = 0
    hits: list = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (f"secret scan: {self.files} files ({self.logs} process logs, {self.trails} audit trails), "
                f"{self.lines} lines, {self.records} audit records; "
                + (f"{len(self.hits)} secrets found" if self.hits else "no secret found"))


def log_files(log_dir: Path) -> list[tuple[Path, set[str], str]]:
    """Each log of the session: (file, kinds its content may hold, what it is)."""
    out = []
    for cmd in sorted(log_dir.glob("*.cmd")):
        stem = str(cmd)[:-len(".cmd")]
        argv = cmd.read_bytes().decode(errors="replace").split("\0")[:-1]
        command = subcommand(argv) or "?"
        for stream in ("out", "err"):
            allow = ANSWERS.get(command.split(" ")[0], set()) if stream == "out" else set()
            what = f"keyless {command} std{stream}"
            linked, noted = Path(f"{stem}.{stream}"), Path(f"{stem}.{stream}.path")
            if linked.exists():
                out.append((linked, allow, what))
            elif noted.exists():
                out.append((Path(noted.read_text().strip()), allow, what))
    for pod in sorted(log_dir.glob("pod-*.log")):
        out.append((pod, set(), "container log"))
    for noted in sorted(log_dir.glob("pod-*.log.path")):
        out.append((Path(noted.read_text().strip()), set(), "container log"))
    return out


def scan_session(log_dir: Path, basetemp: Path, literals: set[str]) -> Scanned:
    """Scans every log in `log_dir` and every audit trail under `basetemp` for the secrets
    `find_secrets` knows, `literals` and those `known_secrets` finds among them."""
    result = Scanned()
    secrets = sorted(literals | known_secrets(basetemp, {log_dir}), key=len, reverse=True)
    seen: set[tuple[int, int]] = set()
    todo = [(path, allow, what, False) for path, allow, what in log_files(log_dir)]
    for root, dirs, files in os.walk(basetemp):
        if Path(root) == log_dir:
            dirs[:] = []
            continue
        todo += [(Path(root) / name, set(), "audit trail", True) for name in sorted(files)
                 if is_audit_trail(Path(root) / name)]
    for path, allow, what, trail in todo:
        try:
            st = path.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen or not path.is_file():
            continue
        seen.add((st.st_dev, st.st_ino))
        result.files += 1
        result.trails += trail
        result.logs += not trail
        with open(path, errors="replace") as f:
            for number, line in enumerate(f, 1):
                result.lines += 1
                result.records += line.startswith('{"eventVersion"')
                text, hits = find_secrets(line, secrets, allow)
                if hits:
                    result.hits.append(f"{path}:{number} ({what}): {', '.join(sorted({h.kind for h in hits}))}: "
                                       f"{redact(text, hits)}")
    return result
