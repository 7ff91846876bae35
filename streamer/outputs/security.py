"""CURVE encryption with a client allow-list for the publisher, key files, and the loopback check (S1-S4).

Measured facts this module is built around (docs RELIABILITY.md): a CURVE server with no ZAP
authenticator accepts *any* client key, and ``zmq.auth.create_certificates`` writes the secret key
world-readable. So here:

- :func:`generate_keypair` writes ``NAME.key`` (public, 0644) and ``NAME.key_secret`` (0600, created
  with that mode, never overwritten); the text format is ZeroMQ's certificate format, so
  ``zmq.auth.load_certificate`` reads these files too.
- :func:`load_secret_key` refuses a secret key file that other users can read; a missing or
  unreadable file or allow-list folder is a :class:`PublisherError` (fail closed).
- :class:`CurveServer` starts the ZAP authenticator with the allow-list **before** the socket is
  made a CURVE server and bound; a client whose public key is not in the folder, and a plaintext
  client, never complete the handshake and so never receive anything. :meth:`CurveServer.reload`
  re-reads the folder and swaps the list atomically (new handshakes only).

Key generation: ``python -m streamer.keys DIR --name NAME`` (see :mod:`streamer.keys`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from pathlib import Path

from model.errors import PublisherError

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
ZAP_DOMAIN = "timesformer-stream"
MIN_LIBZMQ = (4, 3, 2)

_KEY_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([0-9A-Za-z.:+=^!/*?&<>()\[\]{}@%$#-]{40})"\s*$')


# ---- addresses -----------------------------------------------------------------------------------
def is_loopback(address: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost; False for any other tcp host."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if ";" in host:  # tcp://source;dest: what matters is the local interface bound to
        host = host.split(";", 1)[1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: reachable from elsewhere
        return False


# ---- key files -----------------------------------------------------------------------------------
def _key_text(public: bytes, secret: bytes | None) -> str:
    lines = ["#   ZeroMQ CURVE certificate written by python -m streamer.keys",
             "#   " + ("SECRET key: keep it private (mode 0600)" if secret else "public key: give it to the other side"),
             "metadata", "curve", f'    public-key = "{public.decode("ascii")}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and every missing parent with mode 0700, whatever the umask (``mkdir -p`` would
    give the parents the umask's mode: 0777 under umask 000). Folders that exist are left as they are."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to change
        os.chmod(path, 0o700)


def generate_keypair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` (mode 0600) into ``directory``; returns both paths."""
    import zmq

    require_curve()
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise PublisherError(f"key name {name!r}: use letters, digits, '-', '_' or '.'")
    folder = Path(directory)
    make_private_dirs(folder)
    public_path, secret_path = folder / f"{name}{PUBLIC_SUFFIX}", folder / f"{name}{SECRET_SUFFIX}"
    for path in (public_path, secret_path):
        if path.exists():
            raise PublisherError(f"{path} already exists; remove it first or choose another --name")
    public, secret = zmq.curve_keypair()
    # O_EXCL + mode 0600 at creation: the secret is never readable by others, not even for a moment
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(_key_text(public, secret))
    os.chmod(secret_path, 0o600)  # whatever the umask did
    public_path.write_text(_key_text(public, None), encoding="ascii")
    os.chmod(public_path, 0o644)
    return public_path, secret_path


def _read_keys(path: Path) -> dict[str, bytes]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise PublisherError(f"key file {path} does not exist; create keys with: python -m streamer.keys DIR") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PublisherError(f"key file {path} cannot be read ({getattr(exc, 'strerror', None) or exc}); "
                             "check its permissions") from None
    keys = {}
    for line in text.splitlines():
        m = _KEY_LINE.match(line)
        if m:
            keys[m.group(1)] = m.group(2).encode("ascii")
    return keys


def load_public_key(path: str | Path) -> bytes:
    """The Z85 public key in a ``.key`` (or ``.key_secret``) file."""
    keys = _read_keys(Path(path))
    if "public" not in keys:
        raise PublisherError(f"key file {path} holds no public-key line; regenerate it with python -m streamer.keys")
    return keys["public"]


def load_secret_key(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file that only its owner can read."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise PublisherError(f"secret key file {path} does not exist; create one with: "
                             "python -m streamer.keys DIR --name server") from None
    if mode & 0o077:
        raise PublisherError(f"secret key file {path} is readable by other users (mode {mode:04o}); "
                             f"run: chmod 600 {path}")
    keys = _read_keys(path)
    if "secret" not in keys or "public" not in keys:
        raise PublisherError(f"{path} is not a secret key file (no secret-key line); use the NAME{SECRET_SUFFIX} "
                             "file written by python -m streamer.keys")
    return keys["public"], keys["secret"]


def load_allow_list(directory: str | Path) -> frozenset[bytes]:
    """Public keys of the clients allowed to subscribe: every ``*.key`` file in ``directory``."""
    folder = Path(directory)
    if not folder.is_dir():
        raise PublisherError(f"client allow-list folder {folder} does not exist; put the clients' "
                             f"*{PUBLIC_SUFFIX} files there")
    try:
        files = sorted(folder.glob(f"*{PUBLIC_SUFFIX}"))
    except OSError as exc:
        raise PublisherError(f"client allow-list folder {folder} cannot be read ({exc.strerror})") from None
    keys = frozenset(load_public_key(f) for f in files)
    if not keys:
        raise PublisherError(f"client allow-list folder {folder} holds no *{PUBLIC_SUFFIX} files; add the public "
                             "keys of the clients allowed to subscribe")
    return keys


def require_curve() -> None:
    """libzmq with CURVE support and at least :data:`MIN_LIBZMQ` (S4)."""
    import zmq

    version = zmq.zmq_version_info()
    if version < MIN_LIBZMQ or not zmq.has("curve"):
        raise PublisherError(f"CURVE encryption needs libzmq >= {'.'.join(map(str, MIN_LIBZMQ))} built with CURVE; "
                             f"this is libzmq {zmq.zmq_version()} (curve: {zmq.has('curve')}); upgrade pyzmq")


# ---- the server side -----------------------------------------------------------------------------
class _AllowList:
    """ZAP credentials provider: a client may connect when its public key is in the set."""

    def __init__(self, keys: frozenset[bytes]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            log.warning("refused a subscriber with an unknown CURVE key %s...", key[:8].decode("ascii", "replace"))
        return allowed


class CurveServer:
    """An authenticator (allow-list) plus the server key pair, for one or more server sockets.

    The allow-list is read at start and again by :meth:`reload` (the pipeline calls it on SIGHUP).
    ZeroMQ asks the authenticator only during a handshake: a new list applies to connections made
    after the reload; a client already connected stays connected until it reconnects.
    """

    def __init__(self, context, secret_key_file: str | Path, allow_dir: str | Path) -> None:
        require_curve()
        self.public, self.secret = load_secret_key(secret_key_file)
        self.allow_dir = Path(allow_dir)
        self._allow = _AllowList(load_allow_list(self.allow_dir))
        self._context = context
        self._auth = None

    @property
    def allowed(self) -> frozenset[bytes]:
        """The public keys allowed now."""
        return self._allow.keys

    def start(self) -> "CurveServer":
        """Start the ZAP authenticator; call before any socket using it is bound."""
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(self._context, log=logging.getLogger(f"{__name__}.zap"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self._allow)
        log.info("CURVE on: %d allowed client key(s)", len(self.allowed))
        return self

    def reload(self) -> frozenset[bytes]:
        """Read the allow folder again and swap the allow-list in one assignment; returns the new list.

        A folder that cannot be read, holds a bad key file or no key at all raises PublisherError and
        leaves the current list in force (fail closed: never an empty or half-read list by accident).
        """
        keys = load_allow_list(self.allow_dir)
        added, removed = len(keys - self._allow.keys), len(self._allow.keys - keys)
        self._allow.keys = keys  # the authenticator thread reads this attribute once per handshake
        log.info("CURVE allow-list reloaded from %s: %d key(s), %d added, %d removed (clients already "
                 "connected stay connected)", self.allow_dir, len(keys), added, removed)
        return keys

    def secure(self, sock) -> None:
        """Make ``sock`` (not yet bound) a CURVE server checked by the authenticator."""
        if self._auth is None:
            raise RuntimeError("CurveServer.start() must run before secure()")  # a defect, not user input
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.zap_domain = ZAP_DOMAIN.encode("ascii")
        sock.curve_server = True

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def client_options(server_public_file: str | Path, client_secret_file: str | Path) -> dict[int, bytes]:
    """Socket options for a CURVE client: the server's public key and the client's own key pair."""
    import zmq

    require_curve()
    server = load_public_key(server_public_file)
    public, secret = load_secret_key(client_secret_file)
    return {zmq.CURVE_SERVERKEY: server, zmq.CURVE_PUBLICKEY: public, zmq.CURVE_SECRETKEY: secret}


__all__ = ["is_loopback", "generate_keypair", "load_public_key", "load_secret_key", "load_allow_list",
           "require_curve", "CurveServer", "client_options", "ZAP_DOMAIN"]
