"""Many processes at one results store: first opens all at once, then writers all at once.

Used by test_concurrency.py with small counts, and on its own for the figures in docs/benchmarks.md:
    python tests/store/concurrency.py sqlite --opens 80 --writers 8 --rows 50
    python tests/store/concurrency.py postgresql --opens 80 --writers 8 --rows 50   (starts its own server)
Processes are forked and held at a barrier, so they really do start together.
"""
import argparse
import datetime
import multiprocessing
import pathlib
import sys
import tempfile
import time

import sqlalchemy as sa

from edgeopt.store import Store, results_table


# Any exception is counted and reported, not only EdgeoptError: this also measures other store code (the
# pre-migration one, which let some database errors through), and a child that died silently would leave
# the parent waiting.
def _open(url, barrier, queue, _index):
    barrier.wait()
    try:
        Store(url).close()
        queue.put(None)
    except Exception as e:  # noqa: BLE001  (reported, see above)
        queue.put(f"{type(e).__name__}: {str(e).splitlines()[0]}")


def _write(url, barrier, queue, index, rows=0):
    errors = []
    try:
        store = Store(url)
    except Exception as e:  # noqa: BLE001  (reported, see above)
        store, errors = None, [f"{type(e).__name__}: {e}"] * rows
    barrier.wait()
    for n in range(rows if store else 0):
        doc = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(), "status": "ok",
               "device": {"name": f"writer-{index}"}, "latency": {"p90_ms": float(n)}}
        try:
            store.add(doc, run_id=f"w{index}")
        except Exception as e:  # noqa: BLE001  (reported, see above)
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
    if store:
        store.close()
    queue.put(errors[0] if errors else None)
    queue.put(len(errors))


def _fan_out(target, url, count: int, per_process: int = 1, **kwargs) -> list:
    """Run target in `count` forked processes released together; every process's answers."""
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(count), ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, barrier, queue, i), kwargs=kwargs) for i in range(count)]
    for p in procs:
        p.start()
    answers = [queue.get(timeout=300) for _ in range(count * per_process)]
    for p in procs:
        p.join(60)
    if any(p.exitcode != 0 for p in procs):
        answers.append(f"process exit codes {[p.exitcode for p in procs]}")
    return answers


def first_opens(url, count: int) -> dict:
    """`count` processes open one new store at once: how many failed, and the first error."""
    started = time.monotonic()
    errors = [a for a in _fan_out(_open, url, count) if a]
    return {"processes": count, "errors": len(errors), "first_error": errors[0] if errors else None,
            "seconds": round(time.monotonic() - started, 2)}


def writers(url, count: int, rows: int) -> dict:
    """`count` processes each add `rows` results at once: rows found vs expected, errors."""
    started = time.monotonic()
    answers = _fan_out(_write, url, count, per_process=2, rows=rows)
    messages = [a for a in answers if isinstance(a, str)]
    failed = sum(a for a in answers if isinstance(a, int))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(sa.select(sa.func.count()).select_from(results_table)
                             .where(results_table.c.run_id.like("w%"))).scalar_one()
    engine.dispose()
    return {"processes": count, "expected": count * rows, "found": found, "errors": failed,
            "first_error": messages[0] if messages else None, "seconds": round(time.monotonic() - started, 2)}


def _add_folder(url, barrier, queue, _index, folder=""):
    from edgeopt.api import add_to_store
    barrier.wait()
    try:
        queue.put(len(add_to_store([folder], store_url=url.render_as_string(hide_password=False))["added"]))
    except Exception as e:  # noqa: BLE001  (reported, see above)
        queue.put(f"{type(e).__name__}: {str(e).splitlines()[0]}")


def adders(url, count: int, folder) -> dict:
    """`count` processes `history --add` one folder of result files at once: rows in the store, added by each."""
    answers = _fan_out(_add_folder, url, count, folder=str(folder))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(results_table)).scalar_one()
    engine.dispose()
    return {"rows": rows, "added": [a for a in answers if isinstance(a, int)],
            "errors": [a for a in answers if isinstance(a, str)]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["sqlite", "postgresql"])
    parser.add_argument("--opens", type=int, default=80)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=50)
    args = parser.parse_args(argv)
    server = None
    if args.backend == "sqlite":
        url = sa.engine.URL.create("sqlite", database=str(pathlib.Path(tempfile.mkdtemp()) / "store.db"))
    else:
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        import pgserver
        server = pgserver.start()
        url = server.create_database("concurrency")
    try:
        print(f"{args.backend} first opens:", first_opens(url, args.opens))
        print(f"{args.backend} writers:", writers(url, args.writers, args.rows))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
