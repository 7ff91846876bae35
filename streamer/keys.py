"""Generate CURVE key pairs for the publisher and its subscribers.

    python -m streamer.keys keys/ --name server        # keys/server.key, keys/server.key_secret (0600)
    python -m streamer.keys clients/ --name alice      # give clients/alice.key to the server's allow-list

Then run the publisher with ``publisher: {curve_secret_key: keys/server.key_secret,
curve_allow_dir: clients/}`` and subscribe with ``--server-key keys/server.key --client-key
clients/alice.key_secret``. Secret key files are created with mode 0600 and never overwritten.
"""

from __future__ import annotations

import argparse
import sys

from model.errors import RecognizerError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamer.keys", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", help="folder to write the key files into (it and any missing parent are created with mode 0700)")
    p.add_argument("--name", default="server", help="file name stem: NAME.key and NAME.key_secret (default: server)")
    args = p.parse_args(argv)
    from streamer.outputs.security import generate_keypair

    try:
        public, secret = generate_keypair(args.directory, args.name)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"public key: {public}")
    print(f"secret key: {secret} (mode 0600; keep it private)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
