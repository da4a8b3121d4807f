"""`tlc` — the command line: `tlc serve | practice | lab | models | export | lessons`.

    $ tlc serve --practice            # queue server + in-process practice model
    $ tlc serve --upstream http://localhost:1234/v1 --slots 2
    $ tlc practice --port 1234        # the practice model alone, where LM Studio would be
    $ tlc export --format csv --since 2026-09-01 > class.csv   # the class's history
    $ tlc lessons ~/lessons           # copy the lesson notebooks (for a pip install)

Every flag is also an env var (`TLC_PORT`, `TLC_UPSTREAMS`, `TLC_PRACTICE_PORT` …) or a line
in `.env`; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the queue server")
    p.add_argument("--host", help="address to bind (default 127.0.0.1) [TLC_HOST]")
    p.add_argument("--port", type=int, help="port (default 8000) [TLC_PORT]")
    p.add_argument(
        "--upstream",
        action="append",
        dest="upstreams",
        metavar="URL",
        help="OpenAI-compatible base URL; repeat for several (default LM Studio "
        "http://localhost:1234/v1) [TLC_UPSTREAMS, comma-separated]",
    )
    p.add_argument(
        "--practice",
        action="store_true",
        default=None,
        help="start the practice model in this process and use it [TLC_PRACTICE]",
    )
    p.add_argument(
        "--slots",
        type=int,
        help="slots of an upstream that does not report its own (default 1) [TLC_SLOTS]",
    )
    p.add_argument("--max-queue", type=int, help="most waiting requests [TLC_MAX_QUEUE]")
    p.add_argument("--max-per-user", type=int, help="most waiting per user [TLC_MAX_PER_USER]")
    p.add_argument("--default-model", help="model for requests that name none [TLC_DEFAULT_MODEL]")
    p.add_argument(
        "--keys-file",
        metavar="PATH",
        help='TOML of API keys: [keys."KEY"] user = "ada", role = "student" [TLC_KEYS_FILE]',
    )
    p.add_argument(
        "--anyone-on-the-network",
        action="store_true",
        default=None,
        help="allow a non-loopback --host without keys: anyone who can reach this machine "
        "may use the queue and read its history [TLC_ANYONE_ON_THE_NETWORK]",
    )
    p.add_argument(
        "--redis",
        dest="redis_url",
        metavar="URL",
        help="share the upstreams' slots with other replicas through this Redis 7 / Valkey, "
        "e.g. redis://127.0.0.1:6379/0 [TLC_REDIS_URL]",
    )
    p.add_argument(
        "--upstream-key",
        action="append",
        dest="upstream_keys",
        metavar="[URL=]KEY",
        help="key an upstream requires (LM Studio 'Require Authentication'): KEY for every "
        "upstream, or URL=KEY for one; repeat for several [TLC_UPSTREAM_KEYS, comma-separated]",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a host name clients use besides loopback and --host; repeat for several "
        "[TLC_ALLOWED_HOSTS, comma-separated]",
    )
    p.add_argument(
        "--history-days",
        type=int,
        help="delete history older than N days, at start and daily (0: keep all) "
        "[TLC_HISTORY_DAYS]",
    )


def _lessons_parser(sub: Any) -> None:
    p = sub.add_parser("lessons", help="copy the lesson notebooks into a folder")
    p.add_argument("dest", metavar="DIR", help="where to put them (made if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace notebooks already there")


def _practice_parser(sub: Any) -> None:
    p = sub.add_parser("practice", help="run the practice model (LM Studio's wire format)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 1234, like LM Studio)")
    p.add_argument("--tokens-per-second", type=float, help="speed for all models (0: no delay)")
    p.add_argument(
        "--first-token-latency",
        type=float,
        dest="first_token_latency_s",
        help="seconds before the first token",
    )
    p.add_argument("--parallel", type=int, help="slots per model (LM Studio 0.4 default: 4)")
    p.add_argument(
        "--fail-after",
        type=int,
        dest="fail_after_tokens",
        help="fault: send an error after N tokens",
    )
    p.add_argument(
        "--stall-after", type=int, dest="stall_after_tokens", help="fault: go silent after N tokens"
    )
    p.add_argument(
        "--drop-after",
        type=int,
        dest="drop_after_tokens",
        help="fault: cut the connection after N tokens",
    )
    p.add_argument(
        "--truncate-after",
        type=int,
        dest="truncate_after_tokens",
        help="fault: end the stream after N tokens without finishing",
    )
    p.add_argument(
        "--no-models-loaded",
        action="store_true",
        default=None,
        help="fault: answer like LM Studio with no model loaded",
    )


def _given(ns: argparse.Namespace, *skip: str) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if v is not None and k not in ("command", *skip)}


def _logging(level: str) -> None:
    # Written where they happen, on the event loop: handing lines to a writer thread
    # (a QueueHandler) was measured slower here, each line waking that thread to
    # contend for the GIL (py-spy: 14 % of the server's samples in `enqueue`).
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every upstream call at INFO; our own line per state change says more.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The logging HOWTO's "Optimization": the format shows no source line, thread or
    # process, so a line per state change need not look them up.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def serve(ns: argparse.Namespace) -> None:
    import uvicorn

    from .config import Settings
    from .server import create_app
    from .server.auth import Keys
    from .server.connections import raise_open_file_limit, uvicorn_options
    from .server.guard import check_exposure
    from .server.hub import hub_mode, service_address
    from .server.shutdown import QueueServer
    from .server.upstream_keys import upstream_keys

    given = _given(ns)
    if "upstream_keys" in given:
        given["upstream_keys"] = ",".join(given["upstream_keys"])
    try:  # a setting that cannot be right stops the start with one sentence, not a traceback
        settings = service_address(Settings(**given))  # as a Hub service: where the Hub says
        _logging(settings.log_level)
        keys = Keys.from_settings(settings)
        upstream_keys(settings)
        check_exposure(settings, keyed=bool(keys) or hub_mode(settings))
        if settings.redis_url is not None:  # replicas that cannot share slots must not start
            from .server.store.redis_conn import reach_redis  # the optional redis package

            reach_redis(settings.redis_url.get_secret_value())
        app = create_app(settings)
    except ImportError:
        sys.exit("tlc serve: --redis needs the redis package: pip install 'tlc_widgets[redis]'")
    except (ValueError, OSError) as exc:  # pydantic's ValidationError is a ValueError
        sys.exit(f"tlc serve: {exc}")
    if hub_mode(settings):
        logging.getLogger("tlc").info(
            "Hub mode: users and roles from JupyterHub at %s (teachers: group %s); answering at "
            "%s and /",
            settings.hub_api_url,
            ", ".join(settings.hub_teacher_groups) or "none",
            settings.hub_service_prefix or "/",
        )
    raise_open_file_limit()
    # QueueServer: at SIGTERM / Ctrl-C the queue ends every request first (server/shutdown.py).
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=3,
        **uvicorn_options(settings),
    )
    try:
        QueueServer(config).run()
    except KeyboardInterrupt:  # SIGINT (Ctrl-C, or the Hub stopping its service): ended cleanly
        pass


def lessons(ns: argparse.Namespace) -> None:
    from pathlib import Path

    from .course import copy_lessons

    copied, skipped = copy_lessons(Path(ns.dest).expanduser(), overwrite=ns.overwrite)
    for path in copied:
        print(f"copied  {path}")
    for path in skipped:
        print(f"kept    {path} (already there; --overwrite replaces it)")
    print(f"{len(copied)} lessons copied to {ns.dest}; open 00_start_here.ipynb first.")


def practice(ns: argparse.Namespace) -> None:
    import uvicorn

    from .practice import PracticeSettings, create_app

    settings = PracticeSettings(**_given(ns))
    _logging("info")
    logging.getLogger("tlc.practice").warning(
        "PRACTICE MODEL on http://%s:%d/v1 — a statistical text generator, not an LLM",
        settings.host,
        settings.port,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tlc", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _practice_parser(sub)
    _lessons_parser(sub)
    try:
        from .lab import add_parser as add_lab_parser
    except ImportError:  # pragma: no cover - the lab command arrives with the widgets
        pass
    else:
        add_lab_parser(sub)
    from .export_cli import add_parser as add_export_parser
    from .models_cli import add_parser as add_models_parser

    add_export_parser(sub)
    add_models_parser(sub)
    ns = parser.parse_args(argv)
    if ns.command == "serve":
        serve(ns)
    elif ns.command == "practice":
        practice(ns)
    elif ns.command == "lessons":
        lessons(ns)
    else:
        ns.run(ns)


if __name__ == "__main__":
    main()
