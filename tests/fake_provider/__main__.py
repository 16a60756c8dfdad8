"""``python -m tests.fake_provider [--host H] [--port N]``: run the fake upstream (port 0 = pick one)."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after patching, on purpose

from tests.fake_provider.server import serve  # noqa: E402


def main() -> None:
    """Parse arguments and serve forever."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
