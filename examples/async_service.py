"""An aiohttp service that loads ONNX models with ``await hub.aload(...)``.

It serves ``GET /models/{name}`` with the model's inputs and outputs, loading (and
caching) the model on first use without blocking the event loop. By default it builds
asynchub's small example hub in a temp folder and uses it as the repo, so it runs
with no internet:

    python examples/async_service.py              # serve on 127.0.0.1:8080
    python examples/async_service.py --selftest   # start, query every model, stop

Point ``--repo`` at any hub (``onnx/models:main``, an http(s) URL, a folder).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from asynchub import AsyncHub, HubConfig
from asynchub.hosting._example import MODEL_NAMES, build_example_hub

CLIENT = web.AppKey("client", AsyncHub)
REPO = web.AppKey("repo", str)


async def model_info(request: web.Request) -> web.Response:
    """Load the model (from the cache after the first time) and describe it."""
    name = request.match_info["name"]
    client = request.app[CLIENT]
    model = await client.load(name, repo=request.app[REPO], silent=True)
    if model is None:
        raise web.HTTPForbidden(text="repo not trusted")
    graph = model.graph
    return web.json_response(
        {
            "name": name,
            "opset": max(o.version for o in model.opset_import if o.domain == ""),
            "inputs": [i.name for i in graph.input],
            "outputs": [o.name for o in graph.output],
        }
    )


def make_app(repo: str, cache_dir: Path) -> web.Application:
    """One AsyncHub per service: one HTTP session and one download budget."""
    app = web.Application()
    app[REPO] = repo

    async def client_context(app: web.Application):  # type: ignore[no-untyped-def]
        async with AsyncHub(HubConfig.from_env(cache_dir=cache_dir)) as client:
            app[CLIENT] = client
            yield

    app.cleanup_ctx.append(client_context)
    app.router.add_get("/models/{name}", model_info)
    return app


async def selftest(app: web.Application) -> None:
    """Start the service on a free port, query every example model, stop."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            for name in MODEL_NAMES:
                async with session.get(f"http://127.0.0.1:{port}/models/{name}") as r:
                    r.raise_for_status()
                    print(await r.json())
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", help="hub to load from (default: the example hub)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = args.repo or str(build_example_hub(Path(tmp) / "hub"))
        app = make_app(repo, Path(tmp) / "cache")
        if args.selftest:
            asyncio.run(selftest(app))
        else:
            web.run_app(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
