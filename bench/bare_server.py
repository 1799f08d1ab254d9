"""The baseline: a bare aiohttp handler that reads the body, parses the JSON and answers 202."""

from __future__ import annotations

import argparse
import json

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    json.loads(await request.read())
    return web.json_response({"accepted": 1}, status=202)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/conversations", handle)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
